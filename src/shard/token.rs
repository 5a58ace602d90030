//! What a shard's completion belongs to, packed into the 64-bit user_data.

/// What a completion belongs to, packed into the 64-bit user_data: kind (8 bits),
/// connection slot (24 bits) and the slot's generation (32 bits), so a completion for a
/// connection slot that has since been reused is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Accept,
    /// The multishot accept of the shard's TLS listener.
    AcceptTls,
    Wake,
    Recv {
        slot: u32,
        generation: u32,
    },
    Send {
        slot: u32,
        generation: u32,
    },
    Fsync {
        partition: u32,
    },
    Ignore,
}

/// Connection slots a shard can address (24 bits of the token).
pub const SLOTS_MAX: u32 = 1 << 24;

impl Token {
    pub fn encode(self) -> u64 {
        let (kind, slot, generation) = match self {
            Token::Accept => (1u64, 0u32, 0u32),
            Token::Wake => (2, 0, 0),
            Token::Recv { slot, generation } => (3, slot, generation),
            Token::Send { slot, generation } => (4, slot, generation),
            Token::Fsync { partition } => (5, partition, 0),
            Token::Ignore => (6, 0, 0),
            Token::AcceptTls => (7, 0, 0),
        };
        debug_assert!(slot < SLOTS_MAX);
        kind << 56 | u64::from(slot) << 32 | u64::from(generation)
    }

    pub fn decode(data: u64) -> Token {
        let slot = ((data >> 32) & u64::from(SLOTS_MAX - 1)) as u32;
        let generation = data as u32;
        match data >> 56 {
            1 => Token::Accept,
            2 => Token::Wake,
            3 => Token::Recv { slot, generation },
            4 => Token::Send { slot, generation },
            5 => Token::Fsync { partition: slot },
            7 => Token::AcceptTls,
            _ => Token::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            Token::Accept,
            Token::AcceptTls,
            Token::Wake,
            Token::Recv { slot: SLOTS_MAX - 1, generation: u32::MAX },
            Token::Send { slot: 7, generation: 0 },
            Token::Fsync { partition: 4095 },
        ] {
            assert_eq!(Token::decode(token.encode()), token);
        }
    }
}

//! The envelope's fields (SPEC §1.2): required members, their types, and the syntax of
//! `event_id`, `event_type`, `occurred_at` and `key.user_id`.

use super::*;

/// Tape indices of the values of the top-level members sluice reads.
#[derive(Default)]
pub(super) struct Members {
    pub(super) event_id: Option<usize>,
    pub(super) event_type: Option<usize>,
    pub(super) occurred_at: Option<usize>,
    pub(super) key: Option<usize>,
    pub(super) schema_version: Option<usize>,
    pub(super) ctx: Option<usize>,
    pub(super) payload: Option<usize>,
}

pub(super) fn find_members(nodes: &[Node<'_>]) -> Result<Members, EnvelopeError> {
    let Some(&Node::Object { len, .. }) = nodes.first() else {
        return Err(EnvelopeError::NotAnObject);
    };
    let mut members = Members::default();
    let mut at = 1;
    for _ in 0..len {
        let value = at + 1;
        let slot = match key_at(nodes, at)? {
            "event_id" => &mut members.event_id,
            "event_type" => &mut members.event_type,
            "occurred_at" => &mut members.occurred_at,
            "key" => &mut members.key,
            "schema_version" => &mut members.schema_version,
            "ctx" => &mut members.ctx,
            "payload" => &mut members.payload,
            "ingested_at" | "replayed" | "replay_id" => return Err(EnvelopeError::FieldReserved),
            _ => {
                at = value + nodes.get(value).map_or(1, span);
                continue;
            }
        };
        *slot = Some(value);
        at = value + nodes.get(value).map_or(1, span);
    }
    Ok(members)
}

pub(super) fn string_field<'a>(nodes: &[Node<'a>], value: Option<usize>, field: Field) -> Result<&'a str, EnvelopeError> {
    let value = value.ok_or(EnvelopeError::FieldMissing(field))?;
    match nodes.get(value) {
        Some(Node::String(text)) => Ok(text),
        _ => Err(EnvelopeError::FieldType(field)),
    }
}

pub(super) fn check_object(nodes: &[Node<'_>], value: Option<usize>, field: Field) -> Result<(), EnvelopeError> {
    match value.map(|value| nodes.get(value)) {
        None | Some(Some(Node::Object { .. })) => Ok(()),
        Some(_) => Err(EnvelopeError::FieldType(field)),
    }
}

/// `[A-Za-z0-9_.:-]{1,max}`.
pub(super) fn is_name(text: &str, max: usize) -> bool {
    let ok = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b':' | b'-');
    (1..=max).contains(&text.len()) && text.as_bytes().iter().all(ok)
}

pub(super) fn check_fields(nodes: &[Node<'_>]) -> Result<Envelope, EnvelopeError> {
    let members = find_members(nodes)?;
    let event_id = string_field(nodes, members.event_id, Field::EventId)?;
    if !is_name(event_id, EVENT_ID_BYTES_MAX) {
        return Err(EnvelopeError::EventIdInvalid);
    }
    let event_type = string_field(nodes, members.event_type, Field::EventType)?;
    if !is_name(event_type, EVENT_TYPE_BYTES_MAX) {
        return Err(EnvelopeError::EventTypeInvalid);
    }
    let occurred_at = string_field(nodes, members.occurred_at, Field::OccurredAt)?;
    let occurred_at_ms = parse_rfc3339_ms(occurred_at.as_bytes()).ok_or(EnvelopeError::OccurredAtInvalid)?;
    let user_id = user_id(nodes, members.key)?;
    if let Some(value) = members.schema_version {
        string_field(nodes, Some(value), Field::SchemaVersion)?;
    }
    check_object(nodes, members.ctx, Field::Ctx)?;
    check_object(nodes, members.payload, Field::Payload)?;

    let mut envelope = Envelope {
        event_id: [0; EVENT_ID_BYTES_MAX],
        event_id_len: event_id.len() as u8,
        event_type: [0; EVENT_TYPE_BYTES_MAX],
        event_type_len: event_type.len() as u8,
        user_id_hash: murmur2(user_id.as_bytes()),
        close_brace: 0,
        occurred_at_ms,
    };
    envelope.event_id[..event_id.len()].copy_from_slice(event_id.as_bytes());
    envelope.event_type[..event_type.len()].copy_from_slice(event_type.as_bytes());
    Ok(envelope)
}

/// The decoded `key.user_id`: 1..=USER_ID_BYTES_MAX bytes.
pub(super) fn user_id<'a>(nodes: &[Node<'a>], key: Option<usize>) -> Result<&'a str, EnvelopeError> {
    let key = key.ok_or(EnvelopeError::FieldMissing(Field::Key))?;
    let Some(&Node::Object { len, .. }) = nodes.get(key) else {
        return Err(EnvelopeError::FieldType(Field::Key));
    };
    let mut at = key + 1;
    let mut user_id = None;
    for _ in 0..len {
        if key_at(nodes, at)? == "user_id" {
            user_id = Some(at + 1);
            break;
        }
        at += 1 + nodes.get(at + 1).map_or(1, span);
    }
    let user_id = string_field(nodes, user_id, Field::UserId)?;
    if user_id.is_empty() || user_id.len() > USER_ID_BYTES_MAX {
        return Err(EnvelopeError::UserIdInvalid);
    }
    Ok(user_id)
}

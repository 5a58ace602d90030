//! The statuses sluice answers with, as a type: an answer builder takes a [`Status`] and
//! hands it back, so nothing reads a status out of the bytes it wrote.

/// Every status sluice sends (the interim `100` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Continue,
    Ok,
    Created,
    Accepted,
    NoContent,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    ContentTooLarge,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    UnprocessableContent,
    TooManyRequests,
    HeaderFieldsTooLarge,
    InternalServerError,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    /// Every final status, in code order (the metrics' label order).
    pub const FINAL: [Status; 20] = [
        Status::Ok,
        Status::Created,
        Status::Accepted,
        Status::NoContent,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::Conflict,
        Status::ContentTooLarge,
        Status::UnsupportedMediaType,
        Status::RangeNotSatisfiable,
        Status::UnprocessableContent,
        Status::TooManyRequests,
        Status::HeaderFieldsTooLarge,
        Status::InternalServerError,
        Status::ServiceUnavailable,
        Status::VersionNotSupported,
    ];

    /// The status code and its reason phrase (RFC 9110 §15).
    pub const fn line(self) -> (u16, &'static str) {
        match self {
            Status::Continue => (100, "Continue"),
            Status::Ok => (200, "OK"),
            Status::Created => (201, "Created"),
            Status::Accepted => (202, "Accepted"),
            Status::NoContent => (204, "No Content"),
            Status::BadRequest => (400, "Bad Request"),
            Status::Unauthorized => (401, "Unauthorized"),
            Status::Forbidden => (403, "Forbidden"),
            Status::NotFound => (404, "Not Found"),
            Status::MethodNotAllowed => (405, "Method Not Allowed"),
            Status::RequestTimeout => (408, "Request Timeout"),
            Status::Conflict => (409, "Conflict"),
            Status::ContentTooLarge => (413, "Content Too Large"),
            Status::UnsupportedMediaType => (415, "Unsupported Media Type"),
            Status::RangeNotSatisfiable => (416, "Range Not Satisfiable"),
            Status::UnprocessableContent => (422, "Unprocessable Content"),
            Status::TooManyRequests => (429, "Too Many Requests"),
            Status::HeaderFieldsTooLarge => (431, "Request Header Fields Too Large"),
            Status::InternalServerError => (500, "Internal Server Error"),
            Status::ServiceUnavailable => (503, "Service Unavailable"),
            Status::VersionNotSupported => (505, "HTTP Version Not Supported"),
        }
    }

    pub const fn code(self) -> u16 {
        self.line().0
    }

    pub const fn reason(self) -> &'static str {
        self.line().1
    }

    /// The status a code names, if sluice sends it.
    pub fn from_code(code: u16) -> Option<Status> {
        std::iter::once(Status::Continue).chain(Status::FINAL).find(|status| status.code() == code)
    }

    /// Answers with this status carry `Retry-After`: the client is asked to come back.
    pub const fn asks_retry(self) -> bool {
        matches!(self, Status::TooManyRequests | Status::ServiceUnavailable)
    }
}

impl PartialEq<u16> for Status {
    fn eq(&self, code: &u16) -> bool {
        self.code() == *code
    }
}

/// The reason phrase for a status code; "Unknown" for one sluice never sends.
pub fn reason(code: u16) -> &'static str {
    Status::from_code(code).map_or("Unknown", Status::reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_ordered() {
        for pair in Status::FINAL.windows(2) {
            assert!(pair[0].code() < pair[1].code(), "{pair:?}");
        }
        for status in Status::FINAL {
            assert_eq!(Status::from_code(status.code()), Some(status));
        }
        assert_eq!(reason(418), "Unknown");
        assert!(Status::ServiceUnavailable.asks_retry() && !Status::BadRequest.asks_retry());
    }
}

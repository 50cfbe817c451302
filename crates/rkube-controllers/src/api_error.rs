//! Reading API errors: the HTTP code and the message of a `Status`.

/// The HTTP code of an API error (`None` for transport errors).
pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    code(e) == Some(404)
}

/// The message of an API error, as events and conditions show it.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

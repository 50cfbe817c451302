//! Query strings of the kubelet's streaming paths (`command=ls&command=/&tty=1`).

/// Decoded query parameters, repeated keys kept in order.
#[derive(Clone, Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: the API server sends `1`, direct clients `true`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true" | "True" | "TRUE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_flags() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo%20a%26b&tty=1&stdin=true&x=0",
        ));
        assert_eq!(q.all("command"), ["sh", "-c", "echo a&b"]);
        assert!(q.flag("tty") && q.flag("stdin") && !q.flag("x") && !q.flag("none"));
    }
}

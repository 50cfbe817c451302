//! Setting `metadata.resourceVersion` in an object's JSON without parsing it
//! into values: the store keeps objects without it and the revision supplies it
//! on the way out, so the watch cache writes it into the stored bytes. Only the
//! top level and `metadata`'s keys are scanned; everything else is skipped.
//!
//! Nothing good exists for this (serde_json can only borrow or rebuild whole
//! values), so it is written here.

/// `json` (an object) with `metadata.resourceVersion` set to `rv`; None when
/// `json` is not an object with an object `metadata` (the caller then parses).
pub fn with_resource_version(json: &[u8], rv: i64) -> Option<Vec<u8>> {
    let mut s = Scanner { b: json, i: 0 };
    s.ws();
    s.eat(b'{')?;
    loop {
        s.ws();
        if s.peek()? == b'}' {
            return None;
        }
        let key = s.string()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        if key == b"metadata" && s.peek()? == b'{' {
            return in_metadata(json, s, rv);
        }
        s.value()?;
        s.ws();
        match s.next()? {
            b',' => continue,
            _ => return None,
        }
    }
}

/// Scans `metadata` (the scanner is at its `{`): replaces a resourceVersion
/// there, or adds one as its first key.
fn in_metadata(json: &[u8], mut s: Scanner, rv: i64) -> Option<Vec<u8>> {
    let open = s.i;
    s.eat(b'{')?;
    let entry = format!("\"resourceVersion\":\"{rv}\"");
    loop {
        s.ws();
        if s.peek()? == b'}' {
            break;
        }
        let key = s.string()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        let start = s.i;
        s.value()?;
        if key == b"resourceVersion" {
            let mut out = Vec::with_capacity(json.len() + 16);
            out.extend_from_slice(&json[..start]);
            out.extend_from_slice(format!("\"{rv}\"").as_bytes());
            out.extend_from_slice(&json[s.i..]);
            return Some(out);
        }
        s.ws();
        match s.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    // Not there: it goes first.
    let rest = &json[open + 1..];
    let empty = rest.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'}');
    let mut out = Vec::with_capacity(json.len() + entry.len() + 1);
    out.extend_from_slice(&json[..=open]);
    out.extend_from_slice(entry.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    /// A string: its raw contents (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                // A number, true, false or null: up to the next delimiter.
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_resource_version;
    use serde_json::{Value, json};

    fn set(v: &Value, rv: i64) -> Value {
        let bytes = serde_json::to_vec(v).unwrap();
        serde_json::from_slice(&with_resource_version(&bytes, rv).expect("spliced")).unwrap()
    }

    #[test]
    fn adds_or_replaces_the_resource_version_in_metadata_only() {
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {"template": {"metadata": {"name": "x"}}, "s": "a \"metadata\":{ b\\"},
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "status": {"phase": "Running"}
        });
        let mut want = obj.clone();
        want["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(set(&obj, 42), want);

        let mut stored = want.clone();
        stored["metadata"]["resourceVersion"] = json!("7");
        assert_eq!(set(&stored, 42), want);

        assert_eq!(
            set(&json!({"metadata": {}, "n": [1, {"x": null}]}), 3),
            json!({"metadata": {"resourceVersion": "3"}, "n": [1, {"x": null}]})
        );
        let spaced = br#" { "a" : 1.5e3 , "metadata" : { } } "#;
        let v: Value = serde_json::from_slice(&with_resource_version(spaced, 9).unwrap()).unwrap();
        assert_eq!(v, json!({"a": 1.5e3, "metadata": {"resourceVersion": "9"}}));
    }

    #[test]
    fn leaves_what_is_not_an_object_with_metadata_to_the_parser() {
        for bad in [
            &b"[]"[..],
            b"{}",
            b"{\"metadata\": null}",
            b"{\"a\": 1",
            b"\"x\"",
        ] {
            assert_eq!(
                with_resource_version(bad, 1),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

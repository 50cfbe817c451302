//! The txtar archive format and testscript's word splitting, as go-internal's
//! testscript reads them.

use std::collections::HashMap;

/// One script line that does something (blank lines and comments are dropped).
#[derive(Clone, Debug)]
pub struct Line {
    /// 1-based line number in the .txtar file.
    pub number: usize,
    /// The line as written, trimmed.
    pub text: String,
}

/// A parsed .txtar file: the script and the files to write into `$WORK`.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    pub lines: Vec<Line>,
    pub files: Vec<(String, String)>,
}

/// `-- NAME --` starts an embedded file.
fn file_marker(line: &str) -> Option<&str> {
    let name = line.strip_prefix("-- ")?.strip_suffix(" --")?.trim();
    (!name.is_empty()).then_some(name)
}

/// Splits a .txtar file into its script lines and its embedded files.
pub fn parse_archive(text: &str) -> Archive {
    let mut archive = Archive::default();
    let mut current: Option<(String, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        if let Some(name) = file_marker(raw) {
            if let Some(f) = current.take() {
                archive.files.push(f);
            }
            current = Some((name.to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = current.as_mut() {
            body.push_str(raw);
            body.push('\n');
            continue;
        }
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        archive.lines.push(Line {
            number: i + 1,
            text: t.to_string(),
        });
    }
    if let Some(f) = current.take() {
        archive.files.push(f);
    }
    archive
}

/// Expands `$NAME` and `${NAME}` (unset names expand to nothing).
pub fn expand(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' || i + 1 >= chars.len() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (name, next) = if chars[i + 1] == '{' {
            match chars[i + 2..].iter().position(|c| *c == '}') {
                Some(end) => (
                    chars[i + 2..i + 2 + end].iter().collect::<String>(),
                    i + 3 + end,
                ),
                None => {
                    out.push('$');
                    i += 1;
                    continue;
                }
            }
        } else {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            if len == 0 {
                out.push('$');
                i += 1;
                continue;
            }
            (
                chars[i + 1..i + 1 + len].iter().collect::<String>(),
                i + 1 + len,
            )
        };
        out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
        i = next;
    }
    out
}

/// Splits a script line into words: blanks separate words, `'...'` quotes (with `''`
/// for a literal quote) and disables expansion, an unquoted `#` ends the line.
pub fn split_words(line: &str, env: &HashMap<String, String>) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut plain = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    word.push('\'');
                } else {
                    quoted = false;
                }
            } else {
                word.push(c);
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\r' | '#' => {
                if in_word {
                    word.push_str(&expand(&plain, env));
                    plain.clear();
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if c == '#' {
                    return Ok(words);
                }
            }
            '\'' => {
                word.push_str(&expand(&plain, env));
                plain.clear();
                in_word = true;
                quoted = true;
            }
            _ => {
                plain.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(format!("unterminated quote in {line:?}"));
    }
    if in_word {
        word.push_str(&expand(&plain, env));
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("WORK".to_string(), "/tmp/w".to_string()),
            ("IMAGE_PERL".to_string(), "registry.k8s.io/perl".to_string()),
        ])
    }

    #[test]
    fn words_quotes_and_variables() {
        let w = split_words(
            "kubectl create job x --image=${IMAGE_PERL} -- perl -wle 'print bpi(20)'",
            &env(),
        )
        .unwrap();
        assert_eq!(w[4], "--image=registry.k8s.io/perl");
        assert_eq!(w.last().unwrap(), "print bpi(20)");
        let w = split_words("kubectl apply -f $WORK/a.yaml # trailing", &env()).unwrap();
        assert_eq!(w, ["kubectl", "apply", "-f", "/tmp/w/a.yaml"]);
        let w = split_words("stdout ''", &env()).unwrap();
        assert_eq!(w, ["stdout", ""]);
        let w = split_words("stdout 'it''s $WORK'", &env()).unwrap();
        assert_eq!(w, ["stdout", "it's $WORK"]);
        let w = split_words("kubectl get -o jsonpath='{.a}' x", &env()).unwrap();
        assert_eq!(w, ["kubectl", "get", "-o", "jsonpath={.a}", "x"]);
    }

    #[test]
    fn archive_lines_and_files() {
        let a = parse_archive("# c\n\nkubectl get pods\nstdout 'x'\n-- a.yaml --\nk: v\n-- b --\n");
        assert_eq!(a.lines.len(), 2);
        assert_eq!(a.lines[0].number, 3);
        assert_eq!(a.files[0], ("a.yaml".to_string(), "k: v\n".to_string()));
        assert_eq!(a.files[1], ("b".to_string(), String::new()));
    }
}

//! How a session ends, and the `metav1.Status` (v4/v5) or error text (v1-v3)
//! the client reads from the error channel.

use serde_json::json;

/// The end of an exec or attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited 0 (or an attach ended).
    Success,
    /// The process exited with this code.
    ExitCode(i32),
    /// The session could not run.
    Error(String),
}

impl Outcome {
    fn message(&self, command: &[String]) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::ExitCode(code) => Some(format!(
                "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
            )),
            Outcome::Error(e) => Some(format!("Internal error occurred: {e}")),
        }
    }

    /// The JSON `Status` of the v4 and v5 protocols. kubectl turns
    /// `NonZeroExitCode` with an `ExitCode` cause into its own exit code.
    pub fn status_json(&self, command: &[String]) -> Vec<u8> {
        let message = self.message(command);
        let status = match self {
            Outcome::Success => json!({"metadata": {}, "status": "Success"}),
            Outcome::ExitCode(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Error(e) => json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
                "details": {"causes": [{"message": e}]},
                "code": 500,
            }),
        };
        serde_json::to_vec(&status).expect("JSON")
    }

    /// The text of the v1-v3 protocols: nothing on success, else the message.
    pub fn status_text(&self, command: &[String]) -> Option<Vec<u8>> {
        self.message(command).map(String::into_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_as_kubectl_reads_them() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let ok: serde_json::Value =
            serde_json::from_slice(&Outcome::Success.status_json(&cmd)).unwrap();
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));
        let failed: serde_json::Value =
            serde_json::from_slice(&Outcome::ExitCode(3).status_json(&cmd)).unwrap();
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(Outcome::Success.status_text(&cmd), None);
        assert!(
            String::from_utf8(Outcome::ExitCode(3).status_text(&cmd).unwrap())
                .unwrap()
                .contains("exit code 3")
        );
    }
}

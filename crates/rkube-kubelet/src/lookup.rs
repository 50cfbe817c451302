//! How the streaming server finds a pod's containers: the seam between the pod
//! workers (which know pods) and the streaming server (which only serves streams).

use std::path::PathBuf;

/// A container of a running pod, as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    /// The runtime's container id.
    pub id: String,
    /// The CRI log file of the current instance.
    pub log_path: PathBuf,
    /// The log of the previous instance (`kubectl logs --previous`), if it exists.
    pub previous_log_path: Option<PathBuf>,
    /// Whether the container was started with a TTY (attach needs to know).
    pub tty: bool,
    /// Whether the container keeps stdin open (attach -i).
    pub stdin: bool,
}

/// A pod's sandbox: where its network namespace is (port-forward dials from there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxRef {
    pub id: String,
    pub netns_path: PathBuf,
}

/// Lookups the streaming server needs; the pod workers implement it.
pub trait PodLookup: Send + Sync + 'static {
    /// A container of a pod on this node by namespace, pod name and container name
    /// (`None` for the container name means the pod's only or default container).
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<ContainerRef, LookupError>;

    /// The sandbox of a pod on this node.
    fn sandbox(&self, namespace: &str, pod: &str) -> Result<SandboxRef, LookupError>;
}

/// Why a lookup failed, worded as the kubelet answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No such pod on this node.
    #[error("pod {namespace}/{pod} not found")]
    PodNotFound { namespace: String, pod: String },
    /// The pod has no container of that name.
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    /// The container exists but is not running (exec/attach need it running).
    #[error("container {container} in pod {pod} is not running")]
    NotRunning { pod: String, container: String },
    /// A container name is needed: the pod has several.
    #[error("a container name must be specified for pod {pod}, choose one of: [{choices}]")]
    Ambiguous { pod: String, choices: String },
}

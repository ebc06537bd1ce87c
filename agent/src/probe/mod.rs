//! Container probes (startup, liveness, readiness), as the kubelet runs them: the pure
//! state machine deciding when to probe and what the outcomes add up to, the executors
//! making the attempts (exec, httpGet, tcpSocket, from inside the pod's network
//! namespace), and the manager running them beside the sync loop.

mod attempt;
mod http;
mod manager;
mod netns;
mod state;

pub use attempt::{MAX_EXEC_OUTPUT, attempt, exec, http_get, https_get, tcp};
pub use http::{HttpError, request as http_request, status_code as http_status_code};
pub use manager::ProbeManager;
pub use netns::{NetnsError, run_in as run_in_netns};
pub use state::{
    Attempt, Check, ContainerProbes, Health, Instance, Outcome, ProbeKey, ProbeKind, ProbeResult,
    ProbeResults, Prober, Timing,
};

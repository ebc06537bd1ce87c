//! Container probes (startup, liveness, readiness), as the kubelet runs them: the pure
//! state machine deciding when to probe and what the outcomes add up to, and the
//! executors making the attempts (exec, httpGet, tcpSocket).

mod state;

pub use state::{
    Attempt, Check, ContainerProbes, Health, Instance, Outcome, ProbeKey, ProbeKind, ProbeResult,
    ProbeResults, Prober, Timing,
};

use std::fmt;
use std::time::Duration;

/// How long the process supervisor lets a stopping process run before it
/// kills it, where that is known. A stop that needs longer (pre-drain
/// delay + drain deadline) is killed mid-drain and loses work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillBudget {
    /// Who would kill the process.
    pub supervisor: &'static str,
    /// After how long.
    pub budget: Duration,
    /// Where the number comes from.
    pub source: &'static str,
    /// Whether the budget can be extended at run time (systemd with
    /// `NOTIFY_SOCKET`: `EXTEND_TIMEOUT_USEC`).
    pub extendable: bool,
}

impl KillBudget {
    /// The budget for this process, from its environment.
    pub fn detect() -> Option<KillBudget> {
        KillBudget::detect_from(|k| std::env::var(k).ok())
    }

    /// The budget for an environment given as a lookup (for tests):
    ///
    /// - `GRACEFUL_KILL_BUDGET_MS`: an explicit budget (for a Kubernetes
    ///   `terminationGracePeriodSeconds` other than 30 s, a systemd
    ///   `TimeoutStopSec`, a supervisord `stopwaitsecs`);
    /// - Kubernetes (`KUBERNETES_SERVICE_HOST`): 30 s, the default
    ///   `terminationGracePeriodSeconds`;
    /// - systemd (`INVOCATION_ID` or `NOTIFY_SOCKET`): 90 s, the default
    ///   `TimeoutStopSec`, extendable with `NOTIFY_SOCKET`;
    /// - supervisord (`SUPERVISOR_ENABLED`): 10 s, the default `stopwaitsecs`.
    pub fn detect_from(env: impl Fn(&str) -> Option<String>) -> Option<KillBudget> {
        if let Some(ms) = env("GRACEFUL_KILL_BUDGET_MS").and_then(|v| v.parse::<u64>().ok()) {
            return Some(KillBudget {
                supervisor: "the supervisor",
                budget: Duration::from_millis(ms),
                source: "GRACEFUL_KILL_BUDGET_MS",
                extendable: false,
            });
        }
        if env("KUBERNETES_SERVICE_HOST").is_some() {
            return Some(KillBudget {
                supervisor: "Kubernetes",
                budget: Duration::from_secs(30),
                source: "the default terminationGracePeriodSeconds",
                extendable: false,
            });
        }
        let notify = env("NOTIFY_SOCKET").is_some();
        if notify || env("INVOCATION_ID").is_some() {
            return Some(KillBudget {
                supervisor: "systemd",
                budget: Duration::from_secs(90),
                source: "the default TimeoutStopSec",
                extendable: notify,
            });
        }
        if env("SUPERVISOR_ENABLED").is_some() {
            return Some(KillBudget {
                supervisor: "supervisord",
                budget: Duration::from_secs(10),
                source: "the default stopwaitsecs",
                extendable: false,
            });
        }
        None
    }

    /// What a stop must leave of the budget for what follows the drain: the
    /// settle time after a force, the ordered cleanup, the last logs and the
    /// exit itself.
    pub const MARGIN: Duration = Duration::from_secs(1);

    /// Whether a stop whose pre-drain and deadline take `needed` fits, with
    /// [`MARGIN`](Self::MARGIN) to spare: a stop that needs exactly the
    /// budget would be killed while it exits.
    pub fn fits(&self, needed: Duration) -> bool {
        self.extendable || needed.saturating_add(Self::MARGIN) <= self.budget
    }
}

impl fmt::Display for KillBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kills a stopping process after {:?} ({})",
            self.supervisor, self.budget, self.source
        )
    }
}

/// Logs a warning at start-up if a stop of `pre_drain` + `timeout` would
/// outlast the supervisor's kill budget; returns the budget found.
pub fn check_kill_budget(pre_drain: Duration, timeout: Duration) -> Option<KillBudget> {
    let budget = KillBudget::detect()?;
    let needed = pre_drain.saturating_add(timeout);
    if budget.fits(needed) {
        tracing::debug!("{budget}; a stop needs at most {needed:?}");
    } else {
        tracing::warn!(
            "{budget}, but a stop may take {needed:?} (pre-drain {pre_drain:?} + deadline {timeout:?}): \
             the process would be killed mid-drain. Shorten them, or raise the budget \
             (and set GRACEFUL_KILL_BUDGET_MS to it)."
        );
    }
    Some(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn detects_each_supervisor_and_its_default_budget() {
        assert_eq!(KillBudget::detect_from(env(&[])), None);
        let k8s = KillBudget::detect_from(env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")])).unwrap();
        assert_eq!(
            (k8s.supervisor, k8s.budget),
            ("Kubernetes", Duration::from_secs(30))
        );
        assert!(!k8s.fits(Duration::from_secs(31)));
        assert!(
            !k8s.fits(Duration::from_secs(30)),
            "exactly the budget leaves nothing for the exit"
        );
        assert!(!k8s.fits(Duration::from_millis(29_500)));
        assert!(k8s.fits(Duration::from_secs(29)));
        let sd = KillBudget::detect_from(env(&[("INVOCATION_ID", "abc")])).unwrap();
        assert_eq!(
            (sd.supervisor, sd.budget, sd.extendable),
            ("systemd", Duration::from_secs(90), false)
        );
        let sd = KillBudget::detect_from(env(&[("NOTIFY_SOCKET", "/run/x")])).unwrap();
        assert!(sd.extendable && sd.fits(Duration::from_secs(600)));
        let sv = KillBudget::detect_from(env(&[("SUPERVISOR_ENABLED", "1")])).unwrap();
        assert_eq!(sv.budget, Duration::from_secs(10));
        let explicit = KillBudget::detect_from(env(&[
            ("GRACEFUL_KILL_BUDGET_MS", "45000"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ]))
        .unwrap();
        assert_eq!(explicit.budget, Duration::from_secs(45));
    }
}

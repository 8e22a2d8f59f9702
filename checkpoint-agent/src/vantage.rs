//! This node as a vantage point: checks other clusters' API servers (`--watch-api`) on its own
//! task, each check bounded by its deadline, and hands the latest results to the heartbeat.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;
use transition_crds::heartbeat::Reach;
use transition_runtime::reach::{ReachError, Reacher};

use crate::config::VantageArgs;

/// The latest check of each watched API server, with when it ran.
pub type ReachCell = Arc<Mutex<Vec<(Reach, Instant)>>>;

/// Starts checking `targets` (`(cluster, url)`) every `--watch-every-ms` until `stop`; nothing
/// runs when there are none.
pub fn spawn(
    targets: Vec<(String, String)>,
    args: &VantageArgs,
    stop: CancellationToken,
) -> Result<ReachCell, ReachError> {
    let cell: ReachCell = Arc::default();
    if targets.is_empty() {
        return Ok(cell);
    }
    let reacher = Reacher::new(Duration::from_millis(args.watch_timeout_ms.max(100)))?;
    let every = Duration::from_millis(args.watch_every_ms.max(100));
    let out = cell.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            let checks = targets.iter().map(|(cluster, url)| {
                let reacher = reacher.clone();
                async move {
                    let result = reacher.check(url).await;
                    debug!(%cluster, ?result, "API reachability checked");
                    let reach = Reach {
                        cluster: cluster.clone(),
                        reachable: result.is_ok(),
                        error: result.err().map(|e| e.to_string()).unwrap_or_default(),
                        age_ms: 0,
                    };
                    (reach, Instant::now())
                }
            });
            let results = futures::future::join_all(checks).await;
            if let Ok(mut g) = out.lock() {
                *g = results;
            }
        }
    });
    Ok(cell)
}

/// The latest results, aged to now (for the heartbeat being sent).
pub fn current(cell: &ReachCell) -> Vec<Reach> {
    let Ok(g) = cell.lock() else {
        return Vec::new();
    };
    g.iter()
        .map(|(r, at)| Reach {
            age_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..r.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_api_values_are_read_and_bad_ones_named() {
        let args = VantageArgs {
            watch_api: vec!["cluster1-azure=https://10.0.0.1:6443".into(), " ".into()],
            ..Default::default()
        };
        assert_eq!(
            args.targets().unwrap(),
            vec![(
                "cluster1-azure".to_owned(),
                "https://10.0.0.1:6443".to_owned()
            )]
        );
        for (bad, why) in [
            ("no-equals", "expected cluster=url"),
            ("=https://x", "empty"),
            ("c=10.0.0.1:6443", "https://"),
        ] {
            let args = VantageArgs {
                watch_api: vec![bad.into()],
                ..Default::default()
            };
            let err = args.targets().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{err}");
        }
    }
}

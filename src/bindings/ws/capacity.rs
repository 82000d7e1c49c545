//! Opening many WebSockets at once and holding them: how many a server takes, and how long
//! each took to open.

use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use super::connection::{self, WsSpec};
use crate::engine::binding::Failure;

/// Opens `count` connections together, holds the ones that opened for `hold`, closes them and
/// reports `#{requested, opened, failed, errors, p50, p95, p99, max}` (times in ms).
pub async fn measure(spec: WsSpec, count: usize, hold: Duration) -> Result<Map, Failure> {
    let connector = spec.connector()?;
    let attempts = (0..count).map(|_| connection::open(&spec, connector.clone()));
    let results = futures_util::future::join_all(attempts).await;
    let mut open = Vec::new();
    let mut times = Vec::new();
    let mut errors: Vec<(String, i64)> = Vec::new();
    for result in results {
        match result {
            Ok((stream, took)) => {
                open.push(stream);
                times.push(took);
            }
            Err(failure) => match errors.iter_mut().find(|(m, _)| *m == failure.message) {
                Some((_, n)) => *n += 1,
                None => errors.push((failure.message, 1)),
            },
        }
    }
    tokio::time::sleep(hold).await;
    futures_util::future::join_all(open.iter_mut().map(connection::close)).await;
    Ok(report(count, &mut times, &errors))
}

fn report(count: usize, times: &mut [Duration], errors: &[(String, i64)]) -> Map {
    times.sort();
    let mut map = Map::new();
    map.insert("requested".into(), (count as i64).into());
    map.insert("opened".into(), (times.len() as i64).into());
    map.insert("failed".into(), ((count - times.len()) as i64).into());
    let errors: Array = errors
        .iter()
        .map(|(message, n)| {
            let mut entry = Map::new();
            entry.insert("message".into(), message.clone().into());
            entry.insert("count".into(), (*n).into());
            Dynamic::from(entry)
        })
        .collect();
    map.insert("errors".into(), errors.into());
    for (key, share) in [("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)] {
        map.insert(key.into(), percentile(times, share).into());
    }
    map
}

/// The nearest-rank percentile of sorted durations, in whole milliseconds rounded up; 0 when
/// nothing was measured.
fn percentile(sorted: &[Duration], share: usize) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (share * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1].as_micros().div_ceil(1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&times, 50), 50);
        assert_eq!(percentile(&times, 95), 95);
        assert_eq!(percentile(&times, 100), 100);
        assert_eq!(percentile(&times[..1], 99), 1);
        assert_eq!(percentile(&[], 50), 0);
    }
}

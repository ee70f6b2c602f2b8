//! The binaries on a Redis Cluster: three masters with a replica each (wa-testkit), started
//! once for this test binary and stopped by PID.

use std::collections::HashMap;
use std::sync::OnceLock;

use http::StatusCode;
use wa_testkit::Cluster;

use crate::production_redis::{Bin, poll, post};
use crate::support::unique;

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

/// The environment of a process on the cluster: the seeds, and a URL whose host is ignored.
fn cluster_env(queue: &str) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", "redis://ignored.invalid:1".to_owned()),
        ("WA_REDIS_CLUSTER", cluster().seeds()),
        ("WA_QUEUE", queue.to_owned()),
        ("WA_LEASE", "2s".to_owned()),
    ]
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// How often a `--stdout` worker handled each job id.
fn handled_counts(worker: &Bin) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in worker.output().lines().filter(|l| l.starts_with('{')) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(id) = v["id"].as_str()
        {
            *counts.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// With one shard the queue lives in the slot of `{Q}` on one master: the ingress and the
/// worker, given only seed nodes, find it (following MOVED from whichever seed they ask),
/// every job is handled exactly once, a redelivery is refused as a duplicate, and
/// `wa-worker stats` reads the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_on_a_cluster() {
    let queue = unique("cluster1");
    let env = cluster_env(&queue);
    let env = pairs(&env);
    let mut ingress = Bin::ingress(&env);
    ingress.listening().await;
    let ids: Vec<String> = (0..40).map(|n| format!("wamid.{queue}.{n}")).collect();
    for id in &ids {
        assert_eq!(post(ingress.base(), id).await, StatusCode::OK);
    }
    assert_eq!(post(ingress.base(), &ids[0]).await, StatusCode::OK);
    let worker = Bin::worker(&["run", "--stdout"], &env);
    poll("every job handled", || async {
        handled_counts(&worker).len() == ids.len()
    })
    .await;
    let mut stats = Bin::worker(&["stats", "--json"], &env);
    assert_eq!(
        stats.exit_code(crate::production_redis::LIMIT).await,
        0,
        "{}",
        stats.output()
    );
    let doc: serde_json::Value = stats
        .output()
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("stats --json printed a document");
    assert_eq!(doc["pending"], 0, "{doc}");
    let counts = handled_counts(&worker);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

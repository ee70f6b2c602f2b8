//! A Redis Cluster of one node, which no other node has met: it does not know its own address
//! and names itself in `CLUSTER SLOTS` with an empty host. The consumer's blocking waits, which
//! go to the master of the waited-on slot, must still find it (through the seed).

use std::time::Duration;

use wa_queue::{Consumer, Enqueued, Producer, ProducerOptions, RedisOptions};
use wa_testkit::wait_until;

use crate::support::{RedisServer, ServerOptions, fast_opts, job, payload, queue};

/// The host the node gives for itself in its first `CLUSTER SLOTS` range.
fn own_host(server: &RedisServer) -> Vec<u8> {
    let ranges: Vec<redis::Value> = server.query(&["CLUSTER", "SLOTS"]).unwrap();
    let redis::Value::Array(range) = &ranges[0] else {
        panic!("CLUSTER SLOTS answered {ranges:?}")
    };
    let redis::Value::Array(master) = &range[2] else {
        panic!("CLUSTER SLOTS range {range:?}")
    };
    match &master[0] {
        redis::Value::BulkString(host) => host.clone(),
        other => panic!("CLUSTER SLOTS host {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_own_address_serves_blocking_waits() {
    let server = RedisServer::start(ServerOptions {
        cluster: true,
        ..ServerOptions::default()
    });
    server
        .query::<()>(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .unwrap();
    wait_until("the one-node cluster ok", Duration::from_secs(30), || {
        server
            .query::<String>(&["CLUSTER", "INFO"])
            .is_ok_and(|info| info.contains("cluster_state:ok"))
    });
    assert!(
        own_host(&server).is_empty(),
        "the case under test: the node names itself with an empty host"
    );

    let seed = format!("127.0.0.1:{}", server.port());
    let redis = RedisOptions::new(&server.url())
        .unwrap()
        .cluster(&seed)
        .unwrap();
    let q = queue("one_node_cluster");
    let consumer = Consumer::connect(redis.clone(), q.clone(), fast_opts())
        .await
        .unwrap();
    // Nothing pending: every shard is waited on with a blocking call, which needs the node.
    let idle = consumer.fetch(10).await;
    assert!(
        idle.as_ref().is_ok_and(Vec::is_empty),
        "a wait on an empty queue: {idle:?}"
    );

    // A job enqueued while a fetch waits is taken by it (or by the next one).
    let waiting = tokio::spawn(async move {
        for _ in 0..100 {
            let got = consumer
                .fetch(10)
                .await
                .expect("fetch on the one-node cluster");
            if !got.is_empty() {
                return got
                    .iter()
                    .map(|d| d.job().expect("readable job").id().to_owned())
                    .collect::<Vec<_>>();
            }
        }
        Vec::new()
    });
    let producer = Producer::new(redis, q, ProducerOptions::default()).unwrap();
    let p = payload(1);
    let enqueued = producer.enqueue(&[job("one".into(), &p)]).await.unwrap();
    assert_eq!(enqueued, vec![Enqueued::New]);
    assert_eq!(waiting.await.unwrap(), vec!["one".to_owned()]);
}

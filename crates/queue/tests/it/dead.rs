//! Dead letters at scale: filters, pages, and replay/purge of exactly the entries meant, against
//! a real Redis.

use redis::AsyncCommands as _;
use wa_queue::{Admin, DeadFilter, QueueName, entry_key};

use crate::support::{cleanup, conn, queue, redis_url};

/// More than two scan chunks, so filters and pages cross chunk boundaries.
const ENTRIES: usize = 2500;

/// Dead entry `i`: kinds alternate message/status, three phone numbers, every tenth error says
/// "timeout", died at `1_000_000 + i` ms.
fn entry(i: usize) -> String {
    let kind = if i.is_multiple_of(2) {
        "message"
    } else {
        "status"
    };
    let error = if i.is_multiple_of(10) {
        "handler Timeout after 30s"
    } else {
        "exit 1"
    };
    format!(
        r#"{{"v":1,"id":"d{i}","kind":"{kind}","phone_number_id":"p{}","received_at":1,"attempt":5,"payload":{{"i":{i}}},"error":"{error}","died_at":{}}}"#,
        i % 3,
        1_000_000 + i
    )
}

/// Fills dead with entries 0..ENTRIES, entry 0 the oldest (pushed first, at the right end).
async fn fill(url: &str, q: &QueueName) {
    let mut c = conn(url).await;
    let all: Vec<String> = (0..ENTRIES).map(entry).collect();
    for chunk in all.chunks(500) {
        let _: () = c.lpush(q.dead(), chunk).await.unwrap();
    }
}

fn ids(page: &wa_queue::DeadPage) -> Vec<String> {
    page.jobs
        .iter()
        .map(|j| j.job().unwrap().id().to_owned())
        .collect()
}

fn filter() -> DeadFilter {
    DeadFilter::default()
}

/// Pages come newest first, with and without a filter, and a filter's total counts exactly the
/// matching entries across chunks.
#[tokio::test]
async fn filters_and_pages() {
    let url = redis_url();
    let q = queue("dead-pages");
    fill(&url, &q).await;
    let admin = Admin::connect(&url, q.clone()).await.unwrap();

    let page = admin.dead_page(&filter(), 10, 3).await.unwrap();
    assert_eq!(page.total, ENTRIES as u64);
    assert_eq!(ids(&page), ["d2489", "d2488", "d2487"]);

    let status_p1 = filter().kind("status").phone_number_id("p1");
    let want: Vec<usize> = (0..ENTRIES)
        .rev()
        .filter(|i| i % 2 == 1 && i % 3 == 1)
        .collect();
    let page = admin.dead_page(&status_p1, 5, 4).await.unwrap();
    assert_eq!(page.total, want.len() as u64);
    let expected: Vec<String> = want[5..9].iter().map(|i| format!("d{i}")).collect();
    assert_eq!(ids(&page), expected);

    let timeouts = filter().error_contains("TIMEOUT");
    assert_eq!(
        admin.dead_page(&timeouts, 0, 0).await.unwrap().total,
        (ENTRIES / 10) as u64
    );
    let window = filter().died_between(Some(1_000_100), Some(1_000_199));
    let page = admin.dead_page(&window, 0, 1000).await.unwrap();
    assert_eq!(page.total, 100);
    assert_eq!(ids(&page).first().map(String::as_str), Some("d199"));
    assert_eq!(ids(&page).last().map(String::as_str), Some("d100"));

    let by_key = filter().ids([entry_key(&entry(7)), "d8".into()]);
    assert_eq!(
        ids(&admin.dead_page(&by_key, 0, 10).await.unwrap()),
        ["d8", "d7"]
    );
    cleanup(&url, &q).await;
}

/// A filtered replay moves exactly the matching entries to pending, oldest first, as fresh
/// jobs; a filtered purge deletes exactly its entries; nothing else moves.
#[tokio::test]
async fn replay_and_purge_exactly_the_filter() {
    let url = redis_url();
    let q = queue("dead-take");
    fill(&url, &q).await;
    let admin = Admin::connect(&url, q.clone()).await.unwrap();
    let p2_messages = filter().kind("message").phone_number_id("p2");
    let want: Vec<String> = (0..ENTRIES)
        .filter(|i| i % 2 == 0 && i % 3 == 2)
        .map(|i| format!("d{i}"))
        .collect();
    assert_eq!(admin.dead_replay(&p2_messages).await.unwrap(), want.len());

    let mut c = conn(&url).await;
    let mut pending: Vec<String> = c.lrange(q.pending(), 0, -1).await.unwrap();
    pending.reverse(); // the next to be taken first
    let pending_ids: Vec<String> = pending
        .iter()
        .map(|raw| wa_queue::Job::from_json(raw).unwrap())
        .inspect(|j| assert_eq!((j.attempt, j.last_error()), (0, None)))
        .map(|j| j.id().to_owned())
        .collect();
    assert_eq!(pending_ids, want, "exactly the matches, oldest first");
    assert!(pending.iter().all(|raw| !raw.contains("died_at")));

    let timeouts = filter().error_contains("timeout");
    let left = ENTRIES - want.len();
    let timeouts_left = admin.dead_page(&timeouts, 0, 0).await.unwrap().total as usize;
    assert_eq!(admin.dead_purge(&timeouts).await.unwrap(), timeouts_left);
    let rest = admin.dead_page(&filter(), 0, ENTRIES).await.unwrap();
    assert_eq!(rest.total as usize, left - timeouts_left);
    assert!(rest.jobs.iter().all(|j| {
        let id = j.job().unwrap().id();
        !want.iter().any(|w| w == id) && !j.error.as_deref().unwrap().contains("Timeout")
    }));
    cleanup(&url, &q).await;
}

/// dead.lua names an entry by its bytes: a stale index hint still takes out the right entry
/// (found by value), an entry already gone is skipped, and no other entry is touched.
#[tokio::test]
async fn take_out_is_by_bytes_not_index() {
    let url = redis_url();
    let q = queue("dead-bytes");
    let mut c = conn(&url).await;
    let (a, b, x) = (entry(1), entry(2), entry(3));
    // Right end (oldest) first: b, a.
    let _: () = c.lpush(q.dead(), &[&b, &a]).await.unwrap();
    let src = wa_queue::SCRIPTS
        .iter()
        .find(|(name, _)| *name == "dead.lua")
        .unwrap()
        .1;
    // Hints: a is not at -1 (b is), x is not there at all.
    let n: usize = redis::cmd("EVAL")
        .arg(src)
        .arg(2)
        .arg(q.dead())
        .arg(q.pending())
        .arg(-1)
        .arg(&a)
        .arg("")
        .arg(-2)
        .arg(&x)
        .arg("")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let left: Vec<String> = c.lrange(q.dead(), 0, -1).await.unwrap();
    assert_eq!(left, [b]);
    let pending: usize = c.llen(q.pending()).await.unwrap();
    assert_eq!(pending, 0, "a purge pushes nothing");
    cleanup(&url, &q).await;
}

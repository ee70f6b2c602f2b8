//! `wa-worker stats` and `wa-worker dead ...`: one Redis call each, printed as a table for
//! people or as JSON for scripts.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::value::RawValue;
use wa_queue::{Admin, DeadFilter, DeadJob, now_ms};

use crate::cli::{DeadCommand, DeadFilterArgs, DeadSelect, StatsArgs, Usage};

pub async fn stats(admin: &Admin, queue: &str, args: &StatsArgs) -> anyhow::Result<()> {
    let st = admin.stats().await.context("reading queue stats")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        #[derive(Serialize)]
        struct Out<'a> {
            queue: &'a str,
            pending: u64,
            delayed: u64,
            dead: u64,
            in_hand: u64,
            processing: serde_json::Map<String, serde_json::Value>,
            live_consumers: u64,
            oldest_pending_ms: Option<u64>,
            /// ordered mode only: senders with a job in progress (their later jobs wait
            /// outside `pending`)
            #[serde(skip_serializing_if = "is_zero")]
            held_senders: u64,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            shards: Vec<Shard>,
        }
        /// One shard's depths (a sharded queue only).
        #[derive(Serialize)]
        struct Shard {
            pending: u64,
            delayed: u64,
            dead: u64,
            in_hand: u64,
        }
        let doc = Out {
            queue,
            pending: st.pending,
            delayed: st.delayed,
            dead: st.dead,
            in_hand: st.processing.iter().map(|(_, n)| n).sum(),
            processing: st
                .processing
                .iter()
                .map(|(id, n)| (id.clone(), (*n).into()))
                .collect(),
            live_consumers: st.live_consumers,
            oldest_pending_ms: st.oldest_pending_ms,
            held_senders: st.held_senders,
            shards: st
                .shards
                .iter()
                .map(|s| Shard {
                    pending: s.pending,
                    delayed: s.delayed,
                    dead: s.dead,
                    in_hand: s.processing.iter().map(|(_, n)| n).sum(),
                })
                .collect(),
        };
        serde_json::to_writer(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        let oldest = st.oldest_pending_ms.map_or_else(
            || "-".to_owned(),
            |ms| humantime::format_duration(Duration::from_secs(ms / 1000)).to_string(),
        );
        writeln!(out, "queue           {queue}")?;
        writeln!(out, "pending         {}", st.pending)?;
        writeln!(out, "delayed         {}", st.delayed)?;
        writeln!(out, "dead            {}", st.dead)?;
        writeln!(out, "live consumers  {}", st.live_consumers)?;
        writeln!(out, "oldest pending  {oldest}")?;
        if st.held_senders > 0 {
            // ordered mode: their later jobs wait outside pending
            writeln!(out, "held senders    {}", st.held_senders)?;
        }
        if !st.shards.is_empty() {
            writeln!(out, "shards          {}", st.shards.len())?;
            writeln!(out, "  shard  pending  delayed     dead  in hand")?;
            for (i, s) in st.shards.iter().enumerate() {
                let in_hand: u64 = s.processing.iter().map(|(_, n)| n).sum();
                writeln!(
                    out,
                    "  {i:>5} {:>8} {:>8} {:>8} {in_hand:>8}",
                    s.pending, s.delayed, s.dead
                )?;
            }
        }
        if st.processing.is_empty() {
            writeln!(out, "in hand         0")?;
        } else {
            writeln!(out, "in hand")?;
            for (id, n) in &st.processing {
                writeln!(out, "  {id:<40} {n}")?;
            }
        }
    }
    Ok(())
}

pub async fn dead(admin: &Admin, cmd: &DeadCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        DeadCommand::List {
            filter,
            json,
            limit,
        } => {
            let jobs = oldest_matching(admin, &filter.to_filter(), *limit)
                .await
                .context("listing dead jobs")?;
            if *json {
                let docs: Vec<_> = jobs.iter().map(dead_doc).collect();
                serde_json::to_writer(&mut out, &docs)?;
                writeln!(out)?;
            } else {
                print_table(&mut out, &jobs)?;
            }
        }
        DeadCommand::Show { id, json } => {
            let filter = DeadFilter::default().ids([id.clone()]);
            let jobs = admin
                .dead_find(&filter)
                .await
                .context("reading dead jobs")?;
            if jobs.is_empty() {
                anyhow::bail!("no dead job has the id or key {id:?}");
            }
            for d in &jobs {
                if *json {
                    serde_json::to_writer(&mut out, &dead_doc(d))?;
                    writeln!(out)?;
                } else {
                    print_job(&mut out, d)?;
                }
            }
        }
        DeadCommand::Replay { select } => {
            let filter = select.to_filter()?;
            let n = admin
                .dead_replay(&filter)
                .await
                .context("replaying dead jobs")?;
            writeln!(out, "replayed {n}")?;
        }
        DeadCommand::Purge { select, yes } => {
            let filter = select.to_filter()?;
            let by_ids_only = !select.ids.is_empty() && select.filter.to_filter().is_empty();
            if by_ids_only || *yes {
                let n = admin
                    .dead_purge(&filter)
                    .await
                    .context("purging dead jobs")?;
                writeln!(out, "purged {n}")?;
            } else {
                let n = admin
                    .dead_page(&filter, 0, 0)
                    .await
                    .context("counting dead jobs")?
                    .total;
                writeln!(
                    out,
                    "{n} dead jobs match; nothing purged (add --yes to purge them)"
                )?;
            }
        }
    }
    Ok(())
}

/// The oldest `limit` dead jobs `filter` matches, oldest first.
async fn oldest_matching(
    admin: &Admin,
    filter: &DeadFilter,
    limit: usize,
) -> Result<Vec<DeadJob>, wa_queue::QueueError> {
    if filter.is_empty() {
        return admin.dead_list(limit).await;
    }
    let mut jobs = admin.dead_find(filter).await?; // newest first
    jobs.reverse();
    jobs.truncate(limit);
    Ok(jobs)
}

fn print_table(out: &mut impl Write, jobs: &[DeadJob]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<48} {:<8} {:>7}  {:<20} error",
        "key", "id", "kind", "attempt", "died"
    )?;
    for d in jobs {
        let (id, kind, attempt) = match d.job() {
            Ok(j) => (j.id(), j.kind_name(), j.attempt.to_string()),
            Err(_) => ("(unreadable)", "-", "-".to_owned()),
        };
        let died = d.died_at.map_or_else(|| "-".to_owned(), ago);
        let error = one_line(d.error.as_deref().unwrap_or("-"));
        writeln!(
            out,
            "{:<16} {:<48} {kind:<8} {attempt:>7}  {died:<20} {error}",
            d.key,
            one_line(id)
        )?;
    }
    Ok(())
}

/// One dead job for people: its fields, then the payload as indented JSON.
fn print_job(out: &mut impl Write, d: &DeadJob) -> std::io::Result<()> {
    writeln!(out, "key             {}", d.key)?;
    let died = d.died_at.map_or_else(|| "-".to_owned(), ago);
    writeln!(out, "died            {died}")?;
    writeln!(
        out,
        "error           {}",
        one_line(d.error.as_deref().unwrap_or("-"))
    )?;
    let Ok(j) = d.job() else {
        writeln!(out, "unreadable      {}", one_line(d.raw()))?;
        return writeln!(out);
    };
    let fields = [
        ("id", Some(j.id())),
        ("kind", Some(j.kind_name())),
        ("type", j.type_()),
        ("wamid", j.wamid()),
        ("from", j.from()),
        ("from_user_id", j.from_user_id()),
        ("contact_name", j.contact_name()),
        ("phone_number_id", j.phone_number_id()),
        ("waba_id", j.waba_id()),
        ("timestamp", j.timestamp()),
        ("text", j.text()),
        ("last_error", j.last_error()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            writeln!(out, "{name:<15} {}", one_line(v))?;
        }
    }
    writeln!(out, "attempts        {}", j.attempt)?;
    let payload: serde_json::Value =
        serde_json::from_str(j.payload().get()).unwrap_or(serde_json::Value::Null);
    let pretty = serde_json::to_string_pretty(&payload).unwrap_or_default();
    writeln!(out, "payload\n{pretty}\n")
}

/// A value on one line of a terminal: control characters (newlines, escapes) as `\u{..}`, so
/// a message text cannot rewrite what the operator sees.
fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// One dead job for `dead list --json`: the job as the contract's JSON, or, when it could not be
/// read, `job: null` and the stored element as a string in `raw`.
#[derive(Serialize)]
struct DeadDoc<'a> {
    id: Option<&'a str>,
    kind: Option<&'a str>,
    attempt: Option<u32>,
    error: Option<&'a str>,
    died_at: Option<u64>,
    job: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<&'a str>,
}

fn dead_doc(d: &DeadJob) -> DeadDoc<'_> {
    match d.job() {
        Ok(j) => DeadDoc {
            id: Some(j.id()),
            kind: Some(j.kind_name()),
            attempt: Some(j.attempt),
            error: d.error.as_deref(),
            died_at: d.died_at,
            job: RawValue::from_string(j.json().to_owned()).ok(),
            raw: None,
            unreadable: None,
        },
        Err(why) => DeadDoc {
            id: None,
            kind: None,
            attempt: None,
            error: d.error.as_deref(),
            died_at: d.died_at,
            job: None,
            raw: Some(d.raw()),
            unreadable: Some(why),
        },
    }
}

fn ago(ms: u64) -> String {
    let secs = now_ms().saturating_sub(ms) / 1000;
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

impl DeadFilterArgs {
    pub fn to_filter(&self) -> DeadFilter {
        let mut f = DeadFilter::default();
        if let Some(kind) = &self.kind {
            f = f.kind(kind);
        }
        if let Some(id) = &self.phone_number_id {
            f = f.phone_number_id(id);
        }
        if let Some(text) = &self.error {
            f = f.error_contains(text);
        }
        if let Some(age) = self.older_than {
            f = f.older_than(age);
        }
        if let Some(age) = self.newer_than {
            f = f.newer_than(age);
        }
        f
    }
}

impl DeadSelect {
    /// The filter of an action; naming nothing (no ids, no condition, no `--all`) is a usage
    /// error, so that a bare `dead replay` or `dead purge` never means "everything".
    fn to_filter(&self) -> Result<DeadFilter, Usage> {
        let filter = self.filter.to_filter().ids(self.ids.iter().cloned());
        if filter.is_empty() && !self.all {
            return Err(Usage(
                "say which dead jobs: ids, a filter (--kind, --phone-number-id, --error, \
                 --older-than, --newer-than) or --all"
                    .into(),
            ));
        }
        Ok(filter)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

//! `wa-worker stats` and `wa-worker dead ...`: one Redis call each, printed as a table for
//! people or as JSON for scripts.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use serde_json::value::RawValue;
use wa_queue::{Admin, DeadJob};

use crate::cli::{DeadCommand, StatsArgs};

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
        DeadCommand::List { json, limit } => {
            let jobs = admin.dead_list(*limit).await.context("listing dead jobs")?;
            if *json {
                let docs: Vec<_> = jobs.iter().map(dead_doc).collect();
                serde_json::to_writer(&mut out, &docs)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<48} {:<8} {:>7}  {:<20} error",
                    "id", "kind", "attempt", "died"
                )?;
                for d in &jobs {
                    let (id, kind, attempt) = match &d.job {
                        Ok(j) => (j.id.as_str(), j.kind.as_str(), j.attempt.to_string()),
                        Err(_) => ("(unreadable)", "-", "-".to_owned()),
                    };
                    let died = d.died_at.map_or_else(|| "-".to_owned(), ago);
                    let error = d.error.as_deref().unwrap_or("-");
                    writeln!(out, "{id:<48} {kind:<8} {attempt:>7}  {died:<20} {error}")?;
                }
            }
        }
        DeadCommand::Replay { all, ids } => {
            let n = if *all {
                admin.replay_all().await
            } else {
                admin.replay(ids).await
            }
            .context("replaying dead jobs")?;
            writeln!(out, "replayed {n}")?;
        }
        DeadCommand::Purge => {
            let n = admin.purge_dead().await.context("purging dead jobs")?;
            writeln!(out, "purged {n}")?;
        }
    }
    Ok(())
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
    match &d.job {
        Ok(j) => DeadDoc {
            id: Some(&j.id),
            kind: Some(&j.kind),
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
            raw: Some(&d.raw),
            unreadable: Some(why),
        },
    }
}

fn ago(ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(ms) / 1000;
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

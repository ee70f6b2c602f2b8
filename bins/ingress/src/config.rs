//! The flags turned into the endpoint, the listeners' settings and TLS; every error names
//! the variable to fix, never its value.

use wa_webhook::{
    Challenge, ClientAuth, Config, Producer, ServeOptions, Tls, TlsFile, TlsOptions, Verifier,
    Webhook, WebhookError,
};

use crate::cli::Args;

/// Turns the flags into an endpoint; the error names the variable to fix (never its value).
pub fn build(args: &Args) -> Result<Webhook, String> {
    let secret = args.app_secret.as_deref().unwrap_or("");
    let verifier = Verifier::from_list(secret).map_err(|e| {
        format!("WHATSAPP_APP_SECRET (--app-secret) is required and must not be empty: {e}")
    })?;
    let token = args.verify_token.as_deref().unwrap_or("");
    let challenge = Challenge::new(token).map_err(|e| {
        format!("WHATSAPP_VERIFY_TOKEN (--verify-token) is required and must not be empty: {e}")
    })?;
    if !args.path.starts_with('/') {
        return Err("WA_WEBHOOK_PATH (--path) must start with '/'".into());
    }
    if args.max_body == 0 {
        return Err("WA_MAX_BODY (--max-body) must be at least 1".into());
    }
    if args.max_items == 0 {
        return Err("WA_MAX_ITEMS (--max-items) must be at least 1".into());
    }
    if args.event_dedup_ttl.as_secs() == 0 {
        return Err("WA_EVENT_DEDUP_TTL (--event-dedup-ttl) must be at least 1s".into());
    }
    let queue = args.redis.queue(&args.prefix, &args.queue)?;
    let mut config = Config::default();
    config.path.clone_from(&args.path);
    config.max_body = args.max_body;
    config.max_buffered = args.max_buffered;
    config.max_items = args.max_items;
    config.enqueue_timeout = args.enqueue_timeout;
    config.accept = args.accept;
    config.event_dedup_ttl = args.event_dedup_ttl;
    config.request_timeout = args.request_timeout;
    let mut options = config.producer_options();
    options.shard_by = args
        .shard_by
        .parse()
        .map_err(|e| format!("--shard-by/WA_SHARD_BY: {e}"))?;
    options.dedup_ttl = args.dedup_ttl;
    options.min_replicas = args.min_replicas;
    let redis = args.redis.options()?;
    // Does not connect: a Redis that is down now only makes /readyz and POSTs answer 503.
    let producer = Producer::new(redis, queue, options).map_err(|e| format!("REDIS_URL: {e}"))?;
    Ok(Webhook::new(config, verifier, challenge, producer))
}

/// The listeners' settings from the flags.
pub fn serve_options(args: &Args) -> ServeOptions {
    let mut options = ServeOptions::default();
    options.max_connections = args.max_connections;
    options.header_read_timeout = args.header_timeout;
    options.shutdown_grace = args.shutdown_grace;
    options
}

/// The HTTPS settings, loaded and checked now: `None` without `--tls-cert`. The error names
/// the variable whose file is wrong.
pub fn build_tls(args: &Args) -> Result<Option<Tls>, String> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None); // clap requires both or neither
    };
    let mut options = TlsOptions::new(cert, key);
    options.client_auth = args
        .mtls_ca
        .as_ref()
        .map(|ca| ClientAuth::new(ca, args.mtls_subject.trim()));
    Tls::load(options).map(Some).map_err(|e| {
        let var = match &e {
            WebhookError::TlsFile {
                file: TlsFile::Key, ..
            } => "WA_TLS_KEY (--tls-key)",
            WebhookError::EmptyClientSubject => "WA_MTLS_SUBJECT (--mtls-subject)",
            WebhookError::TlsFile {
                file: TlsFile::ClientCa,
                ..
            } => "WA_MTLS_CA (--mtls-ca)",
            _ => "WA_TLS_CERT (--tls-cert)",
        };
        // `{:#}` prints the causes too, on one line.
        format!("{var}: {:#}", anyhow::Error::from(e))
    })
}

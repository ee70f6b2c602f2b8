//! A generated batch shaped like Meta's wire form: compact, `\uXXXX` and `\/` escapes, several
//! entries and changes, phone users mixed with username users who have no `from`.

/// Entries in a generated batch.
pub const ENTRIES: usize = 4;
/// Changes per entry in a generated batch.
pub const CHANGES: usize = 5;

/// The wamid of message `i` as it reads after unescaping.
pub fn wamid(i: usize) -> String {
    format!("wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIY/{i:06}")
}

/// True when message `i` comes from a username user (no `from`, only `from_user_id`).
pub fn is_username_user(i: usize) -> bool {
    i % 3 == 2
}

/// A body with `n` text messages spread evenly over `ENTRIES` x `CHANGES` changes, each change
/// listing one contact per message.
pub fn batch(n: usize) -> String {
    let buckets = ENTRIES * CHANGES;
    let mut s = String::with_capacity(n * 420 + 256);
    s.push_str(r#"{"object":"whatsapp_business_account","entry":["#);
    for e in 0..ENTRIES {
        if e > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#"{{"id":"10451236789{e:04}","changes":["#));
        for c in 0..CHANGES {
            if c > 0 {
                s.push(',');
            }
            let b = e * CHANGES + c;
            let range = (b * n / buckets)..((b + 1) * n / buckets);
            s.push_str(
                r#"{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001234","phone_number_id":"109876543210987"},"contacts":["#,
            );
            for (k, i) in range.clone().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                if is_username_user(i) {
                    s.push_str(&format!(
                        r#"{{"profile":{{"name":"Kai {i}","username":"kai.{i}"}},"user_id":"US.1349120865530{i:06}"}}"#
                    ));
                } else {
                    s.push_str(&format!(
                        r#"{{"profile":{{"name":"Jos\u00e9 N\u00fa\u00f1ez {i}"}},"wa_id":"3461{i:07}","user_id":"ES.44556677{i:06}"}}"#
                    ));
                }
            }
            s.push_str(r#"],"messages":["#);
            for (k, i) in range.enumerate() {
                if k > 0 {
                    s.push(',');
                }
                let sender = if is_username_user(i) {
                    format!(r#""from_user_id":"US.1349120865530{i:06}""#)
                } else {
                    format!(r#""from":"3461{i:07}","from_user_id":"ES.44556677{i:06}""#)
                };
                s.push_str(&format!(
                    r#"{{{sender},"id":"wamid.HBgNNTIxNTUxMjM0NTY3OBUCABIY\/{i:06}","timestamp":"{ts}","type":"text","text":{{"body":"\u00bfTienen la talla {i}? Pedido https:\/\/example.com\/o\/{i}"}}}}"#,
                    ts = 1_768_990_000 + i
                ));
            }
            s.push_str(r#"]},"field":"messages"}"#);
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s
}

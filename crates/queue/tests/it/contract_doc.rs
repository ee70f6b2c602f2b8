/// docs/queue-contract.md quotes every Lua script byte for byte, so the page and the code agree.
#[test]
fn contract_doc_quotes_every_script() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/queue-contract.md");
    let doc = std::fs::read_to_string(path).expect("docs/queue-contract.md");
    assert_eq!(wa_queue::SCRIPTS.len(), 11);
    for (name, src) in wa_queue::SCRIPTS {
        assert!(
            doc.contains(src.trim_end()),
            "{name} differs from the doc's copy"
        );
    }
}

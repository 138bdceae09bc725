//! `openapi/openapi.json` is what `vigia openapi` generates from the code.

#[test]
fn committed_openapi_document_matches_the_code() {
    let path = vigia_testkit::workspace_root().join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = serde_json::to_string_pretty(&vigia_api::openapi()).unwrap() + "\n";
    assert!(
        committed == generated,
        "{} is out of date: run `cargo run -- openapi` (or `just openapi`) and commit it",
        path.display()
    );
}

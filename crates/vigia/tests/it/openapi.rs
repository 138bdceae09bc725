//! `openapi/openapi.json` is what `vigia openapi` generates from the code.
//! `UPDATE_OPENAPI=1 cargo test --test it openapi` rewrites it in place.

#[test]
fn committed_openapi_document_matches_the_code() {
    let path = vigia_testkit::workspace_root().join("openapi/openapi.json");
    let generated = serde_json::to_string_pretty(&vigia_api::openapi()).unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run `cargo run -- openapi` (or `UPDATE_OPENAPI=1 cargo test --test it openapi`) and commit it",
        path.display()
    );
}

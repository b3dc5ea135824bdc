//! The change feed's publisher to EventBridge (not an HTTP endpoint): see `shared::changes::publisher`.
fn main() -> Result<(), lambda_runtime::Error> {
    shared::http::run_changes_publisher()
}

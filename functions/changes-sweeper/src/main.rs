//! The sweeper of due timers (not an HTTP endpoint): see `shared::changes::timers`.
fn main() -> Result<(), lambda_runtime::Error> {
    shared::http::run_changes_sweeper()
}

fn main() -> Result<(), lambda_http::Error> {
    shared::http::run(shared::Endpoint::StatsUsers)
}

//! placeholder until the server branch is merged
#[derive(clap::Args, Debug)]
pub struct ServeArgs {}
pub fn run(_args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    Err("not yet".into())
}

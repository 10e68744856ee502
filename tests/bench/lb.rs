//! Load-balancer benchmark: being written.
fn main() {
    eprintln!("bench-lb: not written yet");
    std::process::exit(2);
}

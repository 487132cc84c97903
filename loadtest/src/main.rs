fn main() {
    eprintln!("polarway-loadtest: not built yet");
    std::process::exit(2);
}

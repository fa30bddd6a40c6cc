//! `sipmon`: parses arguments and config, then calls the library.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("sipmon: not assembled yet");
    std::process::exit(2);
}

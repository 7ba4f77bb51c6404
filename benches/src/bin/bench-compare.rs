//! `bench-compare A.json B.json [--threshold PCT]`: compares two `duet-bench/1` reports and flags p50
//! regressions beyond the threshold and A's noise. Exit status 0: none, 1: a regression, 2: bad input.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = duet_benches::report::compare::cli(&args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code)
}

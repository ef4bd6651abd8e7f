//! Command-line parsing shared by the drivers (`ratios`, `workloads`).

use std::fmt::Display;
use std::str::FromStr;

/// Parses the value `v` of option `name`, naming the option on error.
pub fn number<T: FromStr>(name: &str, v: String) -> Result<T, String>
where
    T::Err: Display,
{
    v.parse().map_err(|e| format!("{name}: {e}"))
}

/// The value of `--rounds`: a whole number of at least 1.
pub fn rounds(v: String) -> Result<usize, String> {
    match number("--rounds", v)? {
        0 => Err("--rounds must be at least 1".into()),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_and_numbers() {
        assert_eq!(rounds("3".into()), Ok(3));
        assert!(rounds("0".into()).unwrap_err().contains("at least 1"));
        assert!(number::<u64>("--x", "y".into())
            .unwrap_err()
            .starts_with("--x: "));
    }
}

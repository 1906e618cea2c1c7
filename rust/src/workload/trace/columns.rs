//! Custom column maps: reading a trace whose format is not recognised by naming its arrival and length columns.

use crate::error::{Error, Result};

/// The unit of a numeric arrival column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeUnit {
    /// Seconds (`s`), the default.
    #[default]
    Seconds,
    /// Milliseconds (`ms`), as in Mooncake's `timestamp`.
    Milliseconds,
    /// Microseconds (`us`).
    Microseconds,
}

impl TimeUnit {
    /// Every unit, in the order error messages list them.
    pub const ALL: [TimeUnit; 3] = [TimeUnit::Seconds, TimeUnit::Milliseconds, TimeUnit::Microseconds];

    /// Seconds in one unit.
    pub fn seconds(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Milliseconds => 1e-3,
            TimeUnit::Microseconds => 1e-6,
        }
    }

    /// The unit's symbol as `unit=` spells it: `s`, `ms` or `us`.
    pub fn symbol(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Milliseconds => "ms",
            TimeUnit::Microseconds => "us",
        }
    }

    /// The unit's name in words, for messages.
    pub fn long_name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Milliseconds => "milliseconds",
            TimeUnit::Microseconds => "microseconds",
        }
    }

    /// Parses a symbol (`s`, `ms`, `us`; ASCII case-insensitive).
    pub fn parse(symbol: &str) -> Result<TimeUnit> {
        let symbol = symbol.trim();
        TimeUnit::ALL.into_iter().find(|u| u.symbol().eq_ignore_ascii_case(symbol)).ok_or_else(|| {
            let shown = super::fields::excerpt(symbol);
            Error::config(format!("columns: unknown unit \"{shown}\"; use s, ms or us"))
        })
    }
}

/// Which columns of a CSV trace (header names, ASCII case-insensitive) or keys of a JSON-lines trace (exact) hold
/// the arrival time and the lengths, for a trace in a format that is not recognised.
///
/// Without an arrival column the trace is length-only and needs an arrival rate, like the LMSYS sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnMap {
    /// The arrival-time column, read as a number of `unit`s; `None` for a length-only trace.
    pub arrival: Option<String>,
    /// The prompt-length column (tokens).
    pub prompt: String,
    /// The output-length column (tokens).
    pub output: String,
    /// The unit of the arrival column (seconds by default).
    pub unit: TimeUnit,
}

/// The keys a column map accepts.
const KEYS: [&str; 4] = ["arrival", "prompt", "output", "unit"];

impl ColumnMap {
    /// Builds a map from `key = value` pairs with keys `arrival` (optional), `prompt`, `output` and `unit`
    /// (optional: `s`, `ms` or `us`; only with `arrival`). Unknown, repeated or empty entries are
    /// [`Error::InvalidConfig`] naming them.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<ColumnMap> {
        let mut found: [Option<String>; 4] = Default::default();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref().trim(), value.as_ref().trim());
            let Some(slot) = KEYS.iter().position(|k| k.eq_ignore_ascii_case(key)) else {
                let shown = super::fields::excerpt(key);
                return Err(Error::config(format!(
                    "columns: unknown key \"{shown}\"; expected arrival, prompt, output and unit"
                )));
            };
            if found[slot].is_some() {
                return Err(Error::config(format!("columns: key \"{}\" given twice", KEYS[slot])));
            }
            if value.is_empty() {
                return Err(Error::config(format!("columns: key \"{}\" has an empty value", KEYS[slot])));
            }
            found[slot] = Some(value.to_string());
        }
        let [arrival, prompt, output, unit] = found;
        let (Some(prompt), Some(output)) = (prompt, output) else {
            return Err(Error::config(
                "columns: prompt=COLUMN and output=COLUMN are required (arrival=COLUMN and unit=s|ms|us are optional)",
            ));
        };
        let unit = match (&arrival, unit) {
            (_, None) => TimeUnit::Seconds,
            (Some(_), Some(u)) => TimeUnit::parse(&u)?,
            (None, Some(_)) => {
                return Err(Error::config("columns: unit applies to the arrival column; give arrival=COLUMN too"));
            }
        };
        Ok(ColumnMap { arrival, prompt, output, unit })
    }

    /// Parses the command-line form `arrival=COL,prompt=COL,output=COL[,unit=ms]` (see [`ColumnMap::from_pairs`]).
    pub fn parse(spec: &str) -> Result<ColumnMap> {
        let pairs = spec
            .split(',')
            .map(|item| {
                item.split_once('=').ok_or_else(|| {
                    let shown = super::fields::excerpt(item.trim());
                    Error::config(format!("columns: expected KEY=COLUMN, found \"{shown}\""))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        ColumnMap::from_pairs(pairs)
    }

    /// The columns to find, arrival first when present, each with its role (`arrival`, `prompt`, `output`).
    pub(super) fn roles(&self) -> Vec<(&'static str, &str)> {
        let arrival = self.arrival.as_deref().map(|a| ("arrival", a));
        arrival.into_iter().chain([("prompt", self.prompt.as_str()), ("output", self.output.as_str())]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_err(spec: &str) -> String {
        match ColumnMap::parse(spec) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig for {spec:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_command_line_form() {
        let map = ColumnMap::parse("arrival=ts, prompt = Request tokens,output=out,unit=MS").unwrap();
        assert_eq!(map.arrival.as_deref(), Some("ts"));
        assert_eq!(
            (map.prompt.as_str(), map.output.as_str(), map.unit),
            ("Request tokens", "out", TimeUnit::Milliseconds)
        );
        let map = ColumnMap::parse("output=b,prompt=a").unwrap();
        assert_eq!((map.arrival, map.unit), (None, TimeUnit::Seconds));
        assert_eq!(ColumnMap::parse("arrival=t,prompt=a,output=b,unit=us").unwrap().unit, TimeUnit::Microseconds);
    }

    #[test]
    fn rejects_bad_maps_naming_the_problem() {
        assert!(config_err("prompt=a").contains("required"));
        assert!(config_err("prompt=a,output=b,model=c").contains("unknown key \"model\""));
        assert!(config_err("prompt=a,output=b,prompt=c").contains("\"prompt\" given twice"));
        assert!(config_err("prompt=,output=b").contains("empty value"));
        assert!(config_err("prompt=a,output=b,unit=ms").contains("give arrival=COLUMN"));
        assert!(config_err("arrival=t,prompt=a,output=b,unit=h").contains("unknown unit \"h\""));
        assert!(config_err("prompt=a,output").contains("expected KEY=COLUMN, found \"output\""));
        assert!(config_err("").contains("expected KEY=COLUMN"));
    }
}

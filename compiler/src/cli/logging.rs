//! Logging on stderr: `-v` shows waddlec's own steps, not its libraries'.
//!
//! The verbosity applies to waddlec's targets (`waddlec`, `waddlec_core`,
//! `waddle_images`);
//! every other crate stays at `warn`, so `-vvv` is waddlec's trace rather
//! than pages of template-engine and HTTP internals. `-vvvv` lets the
//! libraries' `info` through too, and `RUST_LOG` (`target=level,…`, e.g.
//! `RUST_LOG=waddlec=debug,reqwest=trace`) replaces the whole filter.
//! Lines carry no timestamps: output must not vary from run to run.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Our own crates, by tracing target (the crate name).
const OURS: [&str; 3] = ["waddlec", "waddlec_core", "waddle_images"];

/// Installs the logger for `-v` given `verbose` times.
pub fn init(verbose: u8, color: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(verbose, rust_log.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .without_time()
        .with_target(false)
        // Its default reports a failed write with `eprintln!`, which panics
        // on a closed stderr; a lost log line is not worth a crash.
        .log_internal_errors(false);
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}

/// The filter for `verbose` and `RUST_LOG` (used instead, if it parses).
fn filter(verbose: u8, rust_log: Option<&str>) -> Targets {
    if let Some(targets) = rust_log
        .filter(|spec| !spec.trim().is_empty())
        .and_then(|spec| spec.parse::<Targets>().ok())
    {
        return targets;
    }
    let (ours, others) = match verbose {
        0 => (LevelFilter::WARN, LevelFilter::WARN),
        1 => (LevelFilter::INFO, LevelFilter::WARN),
        2 => (LevelFilter::DEBUG, LevelFilter::WARN),
        3 => (LevelFilter::TRACE, LevelFilter::WARN),
        _ => (LevelFilter::TRACE, LevelFilter::INFO),
    };
    OURS.iter().fold(
        Targets::new().with_default(others),
        |targets, crate_name| targets.with_target(*crate_name, ours),
    )
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn verbosity_is_for_our_crates_and_libraries_stay_at_warn() {
        let vvv = filter(3, None);
        assert!(vvv.would_enable("waddlec::render", &Level::TRACE));
        assert!(vvv.would_enable("waddle_images::qcow2", &Level::TRACE));
        assert!(!vvv.would_enable("handlebars::render", &Level::INFO));
        assert!(vvv.would_enable("handlebars::render", &Level::WARN));
        let quiet = filter(0, None);
        assert!(!quiet.would_enable("waddlec", &Level::INFO));
        assert!(quiet.would_enable("waddlec", &Level::WARN));
        let vvvv = filter(4, None);
        assert!(vvvv.would_enable("hyper", &Level::INFO));
        assert!(!vvvv.would_enable("hyper", &Level::DEBUG));
    }

    #[test]
    fn rust_log_replaces_the_filter_unless_it_is_empty_or_unreadable() {
        let custom = filter(0, Some("handlebars=debug"));
        assert!(custom.would_enable("handlebars::render", &Level::DEBUG));
        assert!(!custom.would_enable("waddlec", &Level::ERROR));
        for ignored in ["", "  ", "waddlec=loud"] {
            let targets = filter(1, Some(ignored));
            assert!(targets.would_enable("waddlec", &Level::INFO), "{ignored:?}");
        }
    }
}

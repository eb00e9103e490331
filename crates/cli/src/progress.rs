//! Progress bars for the long-running commands.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar of `len` units drawn with an indicatif `template`.
pub fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

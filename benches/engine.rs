//! `cargo bench`: prints the speed table (see `websr::bench`) for every compiled backend.
//! `websr bench` prints the same table from the CLI without a release build of burn.

use websr::device::Backend;

fn main() {
    // `cargo bench -- <filter>` passes arguments; this table has no filters, ignore them.
    for backend in Backend::available() {
        let device = backend.device().expect("compiled backend");
        let rows = websr::bench::inference_rows(&device, 256, 5);
        println!("{}", websr::bench::to_markdown(backend.name(), &rows));
    }
}

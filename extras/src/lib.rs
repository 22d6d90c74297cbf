//! Nothing here: this package only carries kpg's benchmarks (`benches/`) and the tantivy example
//! (`examples/`), with their heavy dependencies kept out of the main package's test build.

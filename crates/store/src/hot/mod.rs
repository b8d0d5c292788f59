//! The hot path: the statements every event and every delivery runs, and
//! how they are planned. Each handles a whole batch in one round trip, with
//! one array parameter per column, so its text never changes with the batch
//! size; their SQL lives in `crates/store/sql/`. Everything else in `store`
//! is plain diesel.

/// Where a statement in `crates/store/sql/` takes a group of parameters its
/// code pushes (array parameters, comma-separated).
const BINDS: &str = "/* binds */";

/// A statement's text in the pieces between its [`BINDS`] markers, in order.
struct Pieces(std::str::Split<'static, &'static str>);

impl Pieces {
    fn of(sql: &'static str) -> Self {
        Self(sql.split(BINDS))
    }

    fn next(&mut self) -> &'static str {
        self.0.next().expect("a piece of text after each group of binds")
    }
}

pub mod attempts;
pub mod fan_out;
pub mod plan;
pub mod reads;

use std::fmt;
use std::panic::Location;
use std::time::Duration;

/// What is still running: the answer to "what did the deadline cut?".
///
/// Logged automatically when a drain is forced and returned in
/// [`Outcome::Forced`](crate::Outcome::Forced). `Display` prints a table an
/// operator can read in a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The shutdown's name, if it has one (stages and servers are named).
    pub name: Option<String>,
    /// Guards held on this shutdown, named or not (a live child counts as one).
    pub held: usize,
    /// The named guards among them, oldest first.
    pub named: Vec<GuardInfo>,
    /// Reports of the child shutdowns that still hold work.
    pub children: Vec<Report>,
}

/// One named guard in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardInfo {
    /// The name given to [`Shutdown::guard_named`](crate::Shutdown::guard_named).
    pub name: String,
    /// Where the guard was taken.
    pub location: &'static Location<'static>,
    /// How long the guard has been held.
    pub age: Duration,
}

impl Report {
    /// All guards held here and in the children, not counting the guard each
    /// child holds on its parent.
    pub fn total(&self) -> usize {
        let own = self.held.saturating_sub(self.children.len());
        own + self.children.iter().map(Report::total).sum::<usize>()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// Every named guard, here and in the children, oldest first.
    pub fn all_named(&self) -> Vec<&GuardInfo> {
        let mut v: Vec<&GuardInfo> = self.named.iter().collect();
        for c in &self.children {
            v.extend(c.all_named());
        }
        v.sort_by_key(|g| std::cmp::Reverse(g.age));
        v
    }

    /// The age of the oldest named guard.
    pub fn oldest(&self) -> Option<Duration> {
        self.all_named().first().map(|g| g.age)
    }

    fn write_into(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        let name = self.name.as_deref().unwrap_or("shutdown");
        let own = self.held.saturating_sub(self.children.len());
        writeln!(f, "{pad}{name}: {own} held")?;
        for g in &self.named {
            writeln!(f, "{pad}  {:<32} {:>10.3?}  {}", g.name, g.age, g.location)?;
        }
        let unnamed = own.saturating_sub(self.named.len());
        if unnamed > 0 {
            writeln!(f, "{pad}  ({unnamed} unnamed)")?;
        }
        for c in &self.children {
            c.write_into(f, depth + 1)?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} guard(s) still held", self.total())?;
        self.write_into(f, 1)
    }
}

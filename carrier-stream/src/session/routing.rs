//! Which handler takes a session request: the longest registered bundle prefix, the default
//! handler (prefix `""`) for the rest. Without I/O.

/// Handlers by bundle prefix. A handler whose receiver is gone counts as absent
/// (`alive` says which are alive).
#[derive(Debug)]
pub(crate) struct Routes<H> {
    handlers: Vec<(String, H)>,
}

impl<H> Default for Routes<H> {
    fn default() -> Self {
        Self {
            handlers: Vec::new(),
        }
    }
}

impl<H> Routes<H> {
    /// Adds `handler` for `prefix`; refused (returned) if a live handler holds it already.
    pub(crate) fn insert(
        &mut self,
        prefix: &str,
        handler: H,
        alive: impl Fn(&H) -> bool,
    ) -> Result<(), H> {
        self.handlers.retain(|(_, h)| alive(h));
        if self.handlers.iter().any(|(p, _)| p == prefix) {
            return Err(handler);
        }
        self.handlers.push((prefix.to_owned(), handler));
        Ok(())
    }

    /// The live handler with the longest prefix of `bundle`, if any.
    pub(crate) fn route(&self, bundle: &str, alive: impl Fn(&H) -> bool) -> Option<&H> {
        self.handlers
            .iter()
            .filter(|(prefix, handler)| bundle.starts_with(prefix.as_str()) && alive(handler))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, handler)| handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(_: &u32) -> bool {
        true
    }

    #[test]
    fn the_longest_prefix_wins_and_the_default_takes_the_rest() {
        let mut routes = Routes::default();
        routes.insert("file/", 1, alive).unwrap();
        routes.insert("file/photos/", 2, alive).unwrap();
        assert_eq!(routes.route("chat", alive), None, "no default yet");
        routes.insert("", 3, alive).unwrap();
        assert_eq!(routes.route("file/photos/1.jpg", alive), Some(&2));
        assert_eq!(routes.route("file/a.txt", alive), Some(&1));
        assert_eq!(routes.route("file", alive), Some(&3));
        assert_eq!(routes.route("", alive), Some(&3));
        assert_eq!(routes.insert("file/", 4, alive), Err(4));
    }

    #[test]
    fn a_dead_handler_neither_routes_nor_holds_its_prefix() {
        let mut routes = Routes::default();
        routes.insert("a", 1, alive).unwrap();
        routes.insert("ab", 0, alive).unwrap();
        let live = |h: &u32| *h != 0;
        assert_eq!(routes.route("abc", live), Some(&1));
        routes.insert("ab", 5, live).unwrap();
        assert_eq!(routes.route("abc", live), Some(&5));
    }
}

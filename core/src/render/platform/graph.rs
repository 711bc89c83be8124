//! The order Flux applies the platform in: each component's Flux
//! `Kustomization` lists the components it needs in `dependsOn`, each edge
//! with the reason it exists. Checked before anything is rendered: every
//! dependency must name a component of the tree, and the graph must have no
//! cycle (Flux would wait forever); either is an error naming both ends.

use std::collections::BTreeMap;

/// One edge: `from` cannot work before `to` is ready, because `why`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub to: &'static str,
    pub why: &'static str,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("internal error: platform component `{from}` depends on `{to}`, which the platform tree does not have")]
    Missing { from: String, to: String },
    #[error("internal error: platform components `{from}` and `{to}` depend on each other (through {path}); Flux would wait forever")]
    Cycle {
        from: String,
        to: String,
        path: String,
    },
}

/// Checks the graph of `components` (name → needs) and returns the names
/// in an order that applies every component after its needs (names sorted
/// among equals, so the order is stable).
pub fn order(
    components: &BTreeMap<&'static str, Vec<Need>>,
) -> Result<Vec<&'static str>, GraphError> {
    for (from, needs) in components {
        if let Some(need) = needs.iter().find(|n| !components.contains_key(n.to)) {
            return Err(GraphError::Missing {
                from: from.to_string(),
                to: need.to.to_string(),
            });
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &'static str,
        components: &BTreeMap<&'static str, Vec<Need>>,
        marks: &mut BTreeMap<&'static str, Mark>,
        stack: &mut Vec<&'static str>,
        out: &mut Vec<&'static str>,
    ) -> Result<(), GraphError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                let mut path: Vec<&str> = stack[start..].to_vec();
                path.push(name);
                return Err(GraphError::Cycle {
                    from: stack.last().copied().unwrap_or(name).to_string(),
                    to: name.to_string(),
                    path: path.join(" → "),
                });
            }
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        stack.push(name);
        let mut needs: Vec<&'static str> = components[name].iter().map(|n| n.to).collect();
        needs.sort_unstable();
        for need in needs {
            visit(need, components, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        out.push(name);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for name in components.keys() {
        visit(name, components, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(to: &'static str) -> Need {
        Need { to, why: "test" }
    }

    #[test]
    fn needs_come_first() {
        let graph = BTreeMap::from([
            ("apps", vec![need("db"), need("secrets")]),
            ("db", vec![need("secrets")]),
            ("secrets", vec![]),
        ]);
        assert_eq!(order(&graph).unwrap(), ["secrets", "db", "apps"]);
    }

    #[test]
    fn a_missing_component_names_both_ends() {
        let graph = BTreeMap::from([("apps", vec![need("db")])]);
        assert_eq!(
            order(&graph),
            Err(GraphError::Missing {
                from: "apps".into(),
                to: "db".into()
            })
        );
    }

    #[test]
    fn a_cycle_names_both_ends_and_the_path() {
        let graph = BTreeMap::from([
            ("a", vec![need("b")]),
            ("b", vec![need("c")]),
            ("c", vec![need("a")]),
        ]);
        let err = order(&graph).unwrap_err();
        assert_eq!(
            err,
            GraphError::Cycle {
                from: "c".into(),
                to: "a".into(),
                path: "a → b → c → a".into()
            }
        );
        assert!(err.to_string().contains("`c` and `a`"));
    }
}

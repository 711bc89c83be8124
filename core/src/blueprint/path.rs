//! The dotted path (`vm[1].nics[0].address`) of whatever sits at a byte offset
//! of the blueprint, so errors raised while reading (type errors, bad values,
//! unknown keys) name their field as precisely as the semantic checks do.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Path of the innermost key or value containing `offset`; `None` if the
/// text does not parse as TOML or the offset is outside every key.
pub fn path_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    in_table(root.get_ref(), offset)
}

// Spans of tables written as `[header]` sections cover only the header, so
// the search descends into every table instead of trusting container spans.
fn in_table(table: &DeTable<'_>, offset: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = key.get_ref().to_string();
        if let Some(inner) = in_value(value, offset) {
            return Some(format!("{name}{inner}"));
        }
        (key.span().contains(&offset) || value.span().contains(&offset)).then_some(name)
    })
}

/// The rest of the path below `value` (`.key`, `[i]`…), if `offset` is inside it.
fn in_value(value: &Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(table) => in_table(table, offset).map(|inner| format!(".{inner}")),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| match in_value(item, offset) {
                Some(inner) => Some(format!("[{index}]{inner}")),
                None => item.span().contains(&offset).then(|| format!("[{index}]")),
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text = "[host]\nnode = \"a\"\n\n[[vm]]\nid = 1\n\n[[vm]]\nid = 2\nnics = [{ bridge = \"x\", address = \"1.2.3\" }]\n";
        let at = |needle: &str| path_at(text, text.find(needle).unwrap()).unwrap();
        assert_eq!(at("\"a\""), "host.node");
        assert_eq!(at("id = 2"), "vm[1].id");
        assert_eq!(at("\"1.2.3\""), "vm[1].nics[0].address");
    }
}

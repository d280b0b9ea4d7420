//! The permission matrix: the table in docs/deploy.md ("Permission matrix")
//! of every operation the deployment performs with an Azure identity and the
//! one role assignment that allows it. That table is the only list: `doctor`
//! reads it from the copy of the doc built into the binary, and
//! `tests/it/infra_parse.rs` compares the same rows with the Bicep's role
//! assignments.

/// docs/deploy.md as it was when this binary was built.
pub const DEPLOY_DOC: &str = include_str!("../../docs/deploy.md");

/// The heading the table sits under.
const SECTION: &str = "### Permission matrix";

/// One row: `identity` holds `role` on `scope` for `operation`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub operation: String,
    /// `control` or `pull`.
    pub identity: String,
    pub role: String,
    /// What the scope is, in the doc's words (`resource group`, `Key Vault`, …).
    pub scope: String,
}

/// The rows of the matrix in `doc`, or why it cannot be read.
pub fn parse(doc: &str) -> Result<Vec<Row>, String> {
    let section = doc
        .split(SECTION)
        .nth(1)
        .ok_or_else(|| format!("no '{SECTION}' section"))?;
    let mut lines = section
        .lines()
        .skip_while(|l| !l.starts_with("| operation |"));
    let header = lines.next().ok_or("no table under the heading")?;
    let columns: Vec<&str> = cells(header);
    if columns != ["operation", "identity", "role", "scope"] {
        return Err(format!("unexpected columns {columns:?}"));
    }
    let rows: Vec<Row> = lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| match cells(l).as_slice() {
            [operation, identity, role, scope] => Ok(Row {
                operation: operation.to_string(),
                identity: identity.trim_matches('`').to_string(),
                role: role.to_string(),
                scope: scope.to_string(),
            }),
            other => Err(format!("a row with {} cells: {l}", other.len())),
        })
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Err("the table has no rows".into());
    }
    Ok(rows)
}

fn cells(line: &str) -> Vec<&str> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

/// The matrix of the built-in docs/deploy.md.
pub fn rows() -> Vec<Row> {
    parse(DEPLOY_DOC).expect("docs/deploy.md's permission matrix parses (checked by a unit test)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_matrix_parses() {
        let rows = parse(DEPLOY_DOC).unwrap();
        assert!(rows.len() >= 8, "{rows:?}");
        assert!(
            rows.iter()
                .any(|r| r.identity == "pull" && r.role == "AcrPull"),
            "{rows:?}"
        );
    }

    #[test]
    fn a_malformed_matrix_is_refused() {
        assert!(parse("no table here").is_err());
        let doc = "### Permission matrix\n\n| operation | identity | role |\n|---|---|---|\n| a | b | c |\n";
        assert!(parse(doc).unwrap_err().contains("unexpected columns"));
        let doc = "### Permission matrix\n\n| operation | identity | role | scope |\n|---|---|---|---|\n| a | `x` | c |\n";
        assert!(parse(doc).unwrap_err().contains("3 cells"));
    }
}

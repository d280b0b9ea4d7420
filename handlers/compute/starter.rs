//! The small starter project a new environment's workspace begins with, one
//! per template.

use crate::domain::Template;

/// `(relative path, contents)` of the starter files for `template`.
pub fn files(template: Template, name: &str) -> Vec<(&'static str, String)> {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    let slug = if slug.is_empty() {
        "app".to_string()
    } else {
        slug
    };
    match template {
        Template::Node => vec![
            (
                "package.json",
                format!(
                    "{{\n  \"name\": \"{slug}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \"main\": \"index.js\",\n  \"scripts\": {{\n    \"start\": \"node index.js\"\n  }}\n}}\n"
                ),
            ),
            (
                "index.js",
                "const http = require('node:http');\n\nconst port = Number(process.env.PORT) || 3000;\n\
                 http\n  .createServer((req, res) => {\n    res.setHeader('content-type', 'text/plain');\n    res.end('Hello from Dev8!\\n');\n  })\n  \
                 .listen(port, () => console.log(`listening on http://localhost:${port}`));\n"
                    .to_string(),
            ),
            ("README.md", readme(name, "npm start")),
        ],
        Template::Python => vec![
            (
                "main.py",
                "def greet(name: str) -> str:\n    return f\"Hello, {name}!\"\n\n\nif __name__ == \"__main__\":\n    print(greet(\"Dev8\"))\n"
                    .to_string(),
            ),
            ("requirements.txt", "# One package per line, e.g.\n# requests==2.32.3\n".to_string()),
            ("README.md", readme(name, "python3 main.py")),
        ],
        Template::Golang => vec![
            ("go.mod", format!("module example.com/{slug}\n\ngo 1.22\n")),
            (
                "main.go",
                "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"Hello from Dev8!\")\n}\n".to_string(),
            ),
            ("README.md", readme(name, "go run .")),
        ],
    }
}

fn readme(name: &str, run: &str) -> String {
    format!(
        "# {name}\n\nA starter project made by Dev8. Run it from the terminal:\n\n```sh\n{run}\n```\n\nFiles in this folder are kept when the environment stops.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_its_files() {
        let names = |t| {
            files(t, "My App!")
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Template::Node),
            ["package.json", "index.js", "README.md"]
        );
        assert_eq!(
            names(Template::Python),
            ["main.py", "requirements.txt", "README.md"]
        );
        assert_eq!(names(Template::Golang), ["go.mod", "main.go", "README.md"]);
        let pkg = &files(Template::Node, "My App!")[0].1;
        assert!(serde_json::from_str::<serde_json::Value>(pkg).unwrap()["name"] == "my-app");
    }
}

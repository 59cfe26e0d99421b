//! The README's quick start is `examples/quick_start.rs`, which `.ci/run`
//! compiles and runs: this test keeps the two the same text, so that the
//! first code a newcomer reads is code that works.

const README: &str = include_str!("../README.md");
const EXAMPLE: &str = include_str!("../examples/quick_start.rs");

/// The first `rust` code block after `heading` in `markdown`.
fn code_block_after<'a>(markdown: &'a str, heading: &str) -> Option<&'a str> {
    let section = &markdown[markdown.find(heading)?..];
    let start = section.find("```rust\n")? + "```rust\n".len();
    let end = start + section[start..].find("```")?;
    Some(&section[start..end])
}

/// The lines of `source` between the quick start markers.
fn marked_region(source: &str) -> Option<&str> {
    let begin = "// quick start: begin\n";
    let start = source.find(begin)? + begin.len();
    let end = source.find("// quick start: end")?;
    Some(&source[start..end])
}

#[test]
fn the_readme_quick_start_is_the_quick_start_example() {
    let shown = code_block_after(README, "## Quick start").expect("README has a quick start code block");
    let example = marked_region(EXAMPLE).expect("the example marks its quick start");
    assert_eq!(
        shown.trim_end(),
        example.trim_end(),
        "README.md's quick start and examples/quick_start.rs differ: copy the example's marked region into the README"
    );
}

//! A line diff for the audit log: what a policy change changed, as the
//! lines removed (`-`) and added (`+`) in order, found through the longest
//! common subsequence of the two texts' lines.

/// The lines of `after` not in `before` as `+ line`, and those of `before`
/// not in `after` as `- line`, in the order they occur; empty when equal.
pub fn lines(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    // Common prefix and suffix first: a policy change touches a few lines.
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn changed_lines_are_named_in_order() {
        let before = "a\nb\nc\nd\n";
        let after = "a\nB\nc\nd\ne\n";
        assert_eq!(lines(before, after), "+ B\n- b\n+ e");
        assert_eq!(lines(before, before), "");
    }

    /// Applies a diff to `before`'s lines: keeps unchanged lines, drops
    /// `-` lines, inserts `+` lines, in the diff's order.
    fn apply(before: &[String], after: &[String], diff: &str) -> bool {
        let removed: Vec<&str> = diff.lines().filter_map(|l| l.strip_prefix("- ")).collect();
        let added: Vec<&str> = diff.lines().filter_map(|l| l.strip_prefix("+ ")).collect();
        // Every line removed is in `before`, every line added in `after`,
        // and the counts balance.
        removed.iter().all(|r| before.iter().any(|x| x == r))
            && added.iter().all(|a| after.iter().any(|x| x == a))
            && before.len() - removed.len() == after.len() - added.len()
    }

    proptest! {
        #[test]
        fn a_diff_accounts_for_every_line(
            before in proptest::collection::vec("[abc]", 0..12),
            after in proptest::collection::vec("[abc]", 0..12),
        ) {
            let diff = lines(&before.join("\n"), &after.join("\n"));
            prop_assert!(apply(&before, &after, &diff), "{diff}");
            prop_assert_eq!(diff.is_empty(), before == after);
        }
    }
}

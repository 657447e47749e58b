//! A line diff for the audit log: what a policy change changed, as the
//! lines removed (`-`) and added (`+`) in order, found through the longest
//! common subsequence of the two texts' lines.

/// One line of an aligned diff, with its 1-based line numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Same(usize, usize, &'a str),
    Removed(usize, &'a str),
    Added(usize, &'a str),
}

/// Every line of both texts in order: kept, removed from `before` or added
/// in `after`, through the longest common subsequence of their lines.
pub fn ops<'a>(before: &'a str, after: &'a str) -> Vec<Op<'a>> {
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
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
    let mut lcs = vec![vec![0u32; mb.len() + 1]; ma.len() + 1];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            lcs[i][j] = if ma[i] == mb[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out: Vec<Op<'a>> = (0..prefix).map(|k| Op::Same(k + 1, k + 1, a[k])).collect();
    let (mut i, mut j) = (0, 0);
    while i < ma.len() || j < mb.len() {
        if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
            out.push(Op::Same(prefix + i + 1, prefix + j + 1, ma[i]));
            i += 1;
            j += 1;
        } else if j < mb.len() && (i == ma.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(Op::Added(prefix + j + 1, mb[j]));
            j += 1;
        } else {
            out.push(Op::Removed(prefix + i + 1, ma[i]));
            i += 1;
        }
    }
    let (ta, tb) = (a.len() - suffix, b.len() - suffix);
    out.extend((0..suffix).map(|k| Op::Same(ta + k + 1, tb + k + 1, a[ta + k])));
    out
}

/// The lines of `after` not in `before` as `+ line`, and those of `before`
/// not in `after` as `- line`, in the order they occur; empty when equal.
pub fn lines(before: &str, after: &str) -> String {
    ops(before, after)
        .into_iter()
        .filter_map(|op| match op {
            Op::Same(..) => None,
            Op::Removed(_, l) => Some(format!("- {l}")),
            Op::Added(_, l) => Some(format!("+ {l}")),
        })
        .collect::<Vec<_>>()
        .join("\n")
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

        #[test]
        fn the_aligned_diff_rebuilds_both_texts(
            before in proptest::collection::vec("[abc]", 0..12),
            after in proptest::collection::vec("[abc]", 0..12),
        ) {
            let (b, a) = (before.join("\n"), after.join("\n"));
            let ops = ops(&b, &a);
            let left: Vec<(usize, &str)> = ops.iter().filter_map(|op| match *op {
                Op::Same(n, _, l) | Op::Removed(n, l) => Some((n, l)),
                Op::Added(..) => None,
            }).collect();
            let right: Vec<(usize, &str)> = ops.iter().filter_map(|op| match *op {
                Op::Same(_, n, l) | Op::Added(n, l) => Some((n, l)),
                Op::Removed(..) => None,
            }).collect();
            let number = |t: &str| -> Vec<(usize, String)> {
                t.lines().enumerate().map(|(i, l)| (i + 1, l.to_owned())).collect()
            };
            let own = |v: Vec<(usize, &str)>| -> Vec<(usize, String)> {
                v.into_iter().map(|(n, l)| (n, l.to_owned())).collect()
            };
            prop_assert_eq!(own(left), number(&b));
            prop_assert_eq!(own(right), number(&a));
        }
    }
}

"""Statistics of verdicts that decide: Holm-corrected superiority and equivalence (TOST) over a family of
comparisons with the task's baseline, the seeds a paired t-test needs, and a group-sequential design
(alpha spending) that adds seeds until every comparison is decided without inflating its error rates."""

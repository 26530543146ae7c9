"""The parts of ``report.html`` (:mod:`causal.report_html` assembles them), one idea per module: display names,
the robustness verdict, planning terms, sentences, tables, figures, the artwork gallery and HTML helpers."""

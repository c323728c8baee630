"""Pages and plots over plain results: one Section type and one Markdown/HTML writer, the audit, evaluation,
bench, convert and run pages, every plot (matplotlib loads on first use), and the pipeline figures."""

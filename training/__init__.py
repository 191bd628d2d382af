"""Training, pseudolabels and evaluation: `phq synth`, `phq train`, `phq pseudolabel`, `phq eval`. Serving never imports this."""

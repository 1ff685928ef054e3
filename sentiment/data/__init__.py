"""Raw reviews to prepared splits, text cleaning and tokenising, label schemes."""

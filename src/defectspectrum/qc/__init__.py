"""Quality-control simulation: factory rules turn class-index masks into accept/reject verdicts.

`rules` (the YAML rules), `verdict` (one mask's verdict and its reasons), `rates` (recall, FPR,
confidence intervals), `simulate` (truth against prediction over a DS folder), `sweep` (vary one
limit; calibrate it to a target rate), `report_section` and `cli`. No torch import anywhere.
"""

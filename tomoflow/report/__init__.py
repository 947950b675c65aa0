"""What a person looks at: PNG plots (:mod:`.plots`) and the self-contained ``report.html`` (:mod:`.html`)."""

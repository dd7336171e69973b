import dagster as dg

monthly_partition = dg.MonthlyPartitionsDefinition(start_date="2024-01-01", end_date="2024-04-01")
weekly_partition = dg.WeeklyPartitionsDefinition(start_date="2024-01-07", end_date="2024-03-31")

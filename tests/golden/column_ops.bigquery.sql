SELECT
  `id`,
  `email`,
  `ltv`,
  `domain`
FROM (
  SELECT
    CAST(e.`customer_id` AS STRING) AS `id`,
    e.`email` AS `email`,
    e.`lifetime_value` AS `ltv`,
    SPLIT_PART(e.`email`, '@', 2) AS `domain`,
    ROW_NUMBER() OVER (PARTITION BY e.`customer_id` ORDER BY e.`customer_id`) AS _row_number
  FROM customers AS e
  WHERE
    NOT e.`customer_id` IS NULL
    AND (
      COALESCE((
        e.`lifetime_value` >= 500
      ), FALSE)
      AND COALESCE((
        e.`country` IN ('US', 'DE')
      ), FALSE)
      AND COALESCE((
        NOT e.`country` IN ('FR')
      ), FALSE)
      AND COALESCE((
        e.`lifetime_value` BETWEEN 100 AND 900
      ), FALSE)
      AND NOT e.`email` IS NULL
      AND COALESCE((
        INSTR(e.`email`, '50%_off') > 0
      ), FALSE)
      AND COALESCE((
        STARTS_WITH(e.`email`, 'ann')
      ), FALSE)
      AND COALESCE((
        RIGHT(e.`email`, 4) = '.com'
      ), FALSE)
      AND COALESCE((
        e.`signup_at` < CAST('2026-10-29 12:00:00' AS DATETIME)
      ), FALSE)
      AND COALESCE((
        e.`is_vip` <> FALSE
      ), FALSE)
    )
) AS _t
WHERE
  _row_number = 1
